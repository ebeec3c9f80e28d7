"""The side-effect layer: everything clew does to a kernel goes through here.

One seam: a `namespace.Namespace` says where (a name, a namespace file, or this process's own),
`runner` is the only place a process is started, and errors (`errors.KernelError`) are one line
naming the namespace and the object. The proxy writes through `iptables.IptablesKernel` (iptables
mode) or `nftables.NftKernel` (nftables mode: `nftables.NodeNft`, a long-lived libnftables context
in the node's namespace), which ``clew.fakes.iptables.FakeIptables`` and ``clew.fakes.nft.FakeNft``
stand in for in tests without root.
"""
