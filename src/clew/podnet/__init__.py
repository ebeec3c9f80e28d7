"""The flat pod network: flannel's model (kube subnet manager; vxlan and host-gw backends).

One sync of a node, in order (the agent's loop; every step is idempotent)::

    conf   = netconf.load("/etc/kube-flannel/net-conf.json")
    subnet = subnets.node_subnet(me, conf.network)              # Node.spec.podCIDR
    under  = setup.read_underlay(NETNS, "eth0")
    node   = setup.setup_node(NETNS, conf, me.name, subnet, under)  # flannel.<VNI> for vxlan
    publish annotations.lease_annotations(node.lease) on the Node
    SubnetEnv.for_subnet(conf.network, subnet, node.pod_mtu, ipmasq=True).write(path)
    masquerade.apply(NETNS, conf.network, subnet)
    leases = annotations.leases(all_nodes, conf.network).leases
    reconcile.reconcile(NETNS, node.backend.desired(node.lease, leases, under))

Pure modules: netconf, subnet_env, mtu, subnets, annotations, desired, diff, backends/*.
Kernel users: setup, reconcile, masquerade (the apply half).
"""
