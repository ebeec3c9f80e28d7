"""kube-proxy's iptables mode: render (pure), jump rules, and the applier. See README.md."""
