"""The whole product on one machine: the operator's reconcile() with local processes."""

from cachefleet_operator.local.fleet import LocalFleet, cluster_from_manifest
from cachefleet_operator.local.processes import LocalError

__all__ = ["LocalError", "LocalFleet", "cluster_from_manifest"]
