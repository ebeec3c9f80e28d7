"""The typed, validated snapshot every other part of clew reads.

Kubernetes objects arrive as untyped dicts (JSON or YAML). `from_kube` turns each into a frozen
dataclass here or into a `Rejection` naming the object and field; nothing downstream ever sees
an untyped dict. This package imports nothing else of clew.
"""
