"""clew-cni: the CNI plugin that attaches pods to the node's bridge (see plugin.py)."""
