"""The node agent: the Service proxy and the pod network of one node, kept in sync with a source."""
