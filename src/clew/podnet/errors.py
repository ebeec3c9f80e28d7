"""Errors of the pod network, one class per kind of bad input, all under :class:`PodnetError`.

::

    PodnetError (ValueError)
     ├─ NetConfError      net-conf.json: names the key (``Backend.VNI``)
     ├─ SubnetEnvError    subnet.env: names the file and the missing or bad keys
     ├─ SubnetError       a node's pod CIDR: missing, outside Network, or none left to allocate
     ├─ LeaseError        a Node's flannel annotations: names the node and the annotation
     └─ BackendError      a backend cannot program this lease set (host-gw off-link, NAT)

Kernel failures are not here: they are :class:`clew.kernel.errors.KernelError` and name the
network namespace.
"""

from __future__ import annotations


class PodnetError(ValueError):
    """Bad pod-network input; the message is one line a user can act on."""


class NetConfError(PodnetError):
    """A net-conf.json value is invalid; ``key`` is its dotted path (``Backend.Port``)."""

    def __init__(self, key: str, why: str) -> None:
        self.key = key
        self.why = why
        super().__init__(f"net-conf.json: {key}: {why}")


class SubnetEnvError(PodnetError):
    """A subnet.env file is missing keys or holds bad values."""


class SubnetError(PodnetError):
    """A node's subnet cannot be determined or allocated."""


class LeaseError(PodnetError):
    """A Node's flannel annotations are malformed."""

    def __init__(self, node: str, key: str, why: str) -> None:
        self.node = node
        self.key = key
        super().__init__(f'node "{node}": annotation {key}: {why}')


class BackendError(PodnetError):
    """The backend cannot program the pod network for this lease set."""
