"""Free TCP ports on 127.0.0.1: the local fleet's ``free_port``, so a test that starts servers
of its own beside a local fleet shares one record of the ports handed out in this process
(two records could each hand out the port the other just gave, before either is bound)."""

from __future__ import annotations

from cachefleet_operator.local.processes import free_port

__all__ = ["free_port"]
