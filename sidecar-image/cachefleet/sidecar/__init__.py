"""The sidecar: a Redis-protocol proxy on localhost that shards requests by the ring."""

from cachefleet.sidecar.app import Sidecar, run, serve

__all__ = ["Sidecar", "run", "serve"]
