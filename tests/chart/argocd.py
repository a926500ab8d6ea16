"""The chart's Argo CD health check (Lua), run the way Argo CD runs it: ``obj`` in, a table out."""

from __future__ import annotations

from typing import Any

import lupa

from tests.chart.chart import CHART

HEALTH_CHECK = CHART / "files" / "argocd-health.lua"


def health(cluster: dict[str, Any]) -> tuple[str, str]:
    """(status, message) the health check gives ``cluster``."""
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    as_lua = runtime.eval("function(obj, script) _G.obj = obj; return load(script)() end")
    result = as_lua(_to_lua(runtime, cluster), HEALTH_CHECK.read_text())
    return str(result["status"]), str(result["message"])


def _to_lua(runtime: Any, value: Any) -> Any:
    # Argo CD hands the script the object as Lua tables, lists 1-based.
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value
