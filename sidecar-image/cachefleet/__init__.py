"""cachefleet's data plane: the hash ring, the sidecar proxy and the smart client.

Nothing here imports the operator, kopf or the Kubernetes client: the sidecar image stays small.
"""

__version__ = "0.1.0"
