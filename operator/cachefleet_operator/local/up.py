"""``cachefleet up``: a CacheCluster manifest run on this machine until Ctrl-C.

The operator's own reconcile() drives it (``LocalFleet``); this module is the loop around it:
it prints where to connect, redraws a live view, follows edits of the manifest file (a changed
``shards`` walks the same warm-up the operator would, on the same measured hit ratio), and on
Ctrl-C or SIGTERM stops every process it started.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import yaml

from cachefleet_operator.local.fleet import LocalFleet
from cachefleet_operator.local.processes import LocalError
from cachefleet_operator.local.stopping import Stop, StopSignal, stop_on_signals
from cachefleet_operator.local.view import observe, render

VIEW_SECONDS = 1.0
READY_SECONDS = 60.0


def load_manifest(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise LocalError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as error:
        raise LocalError(f"{path} is not YAML: {error}") from None
    clusters = [d for d in documents if isinstance(d, dict) and d.get("kind") == "CacheCluster"]
    if len(clusters) != 1:
        raise LocalError(f"{path} must hold exactly one CacheCluster, it holds {len(clusters)}")
    return clusters[0]


def run_up(
    manifest_path: Path,
    *,
    port: int | None = None,
    admin_port: int | None = None,
    directory: Path | None = None,
    out: TextIO = sys.stdout,
) -> int:
    manifest = load_manifest(manifest_path)
    scratch = directory or Path(tempfile.mkdtemp(prefix="cachefleet-up-"))
    fleet = LocalFleet(
        manifest,
        scratch,
        sidecar_port=port,
        admin_port=admin_port,
        on_event=lambda e: print(f"event {e.type} {e.reason}: {e.message}", file=out, flush=True),
    )
    live = out.isatty()
    with stop_on_signals() as stop:

        def ready() -> bool:
            stop.check()
            return fleet.sidecar is not None and fleet.phase == "Stable"

        try:
            fleet.start()
            fleet.run(ready, READY_SECONDS)
            describe = fleet.describe()
            print(
                f"ready: connect to {describe['sidecar']} (redis-cli -p {fleet.sidecar_port}); "
                f"admin {describe['admin']}; servers "
                + ", ".join(f"{m} {a}" for m, a in describe["servers"].items())
                + f"; files in {describe['directory']}",
                file=out,
                flush=True,
            )
            follow(fleet, manifest_path, out, live, stop)
        except Stop:
            pass
        finally:
            fleet.stop()
    print("stopped: every process this fleet started is gone", file=out, flush=True)
    return 0


def follow(
    fleet: LocalFleet, manifest_path: Path, out: TextIO, live: bool, stop: StopSignal
) -> None:
    """Reconcile as the operator would until a signal, pick up edits of the manifest, show
    the view."""
    seen = manifest_path.stat().st_mtime
    next_view = 0.0

    def tick() -> None:
        nonlocal seen, next_view
        try:
            mtime = manifest_path.stat().st_mtime
        except OSError:
            mtime = seen
        if mtime != seen:
            seen = mtime
            try:
                fleet.edit(load_manifest(manifest_path))
                print(f"applied the edited {manifest_path}", file=out, flush=True)
            except LocalError as error:
                print(f"not applied: {error}", file=out, flush=True)
        now = time.monotonic()
        if now >= next_view:
            next_view = now + (VIEW_SECONDS if live else 10 * VIEW_SECONDS)
            text = render(observe(fleet))
            if live:
                out.write("\x1b[2J\x1b[H" + text + "\n")
            else:
                out.write(text + "\n\n")
            out.flush()

    fleet.run(lambda: stop.requested, tick=tick)
