"""cachefleet's control plane: the CacheCluster operator.

It imports the data plane's public pieces (the ring and the sidecar config schema) so it computes
assignments exactly as the sidecar routes; the data plane never imports it.
"""

__version__ = "0.1.0"
