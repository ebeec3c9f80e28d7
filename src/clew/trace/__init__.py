"""The maze explainer: follow a packet through a node's real rules and routes, purely.

`node_view.NodeView` holds what the kernel had (rules, addresses, routes, links, neighbours,
FDB); `engine.trace` walks a `packet.Packet` through it hook by hook and returns every distinct
outcome with its probability; `story` and `explain` turn that into words.
"""
