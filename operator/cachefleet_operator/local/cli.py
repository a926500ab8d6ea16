"""``cachefleet up`` and ``cachefleet demo``: the product on this machine, from the operator's own
code. Importing this module is cheap; the work is imported by the handlers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cachefleet.cli import UsageError

DEFAULT_MANIFEST = Path("examples/basic.yaml")


def register(subparsers: Any) -> None:
    up = subparsers.add_parser(
        "up",
        help="run a CacheCluster manifest on this machine (redis-server, the sidecar)",
        description=(
            "Run the fleet a CacheCluster manifest describes on this machine: one redis-server "
            "per shard and gutter server and the sidecar with the config the operator renders, "
            "driven by the operator's own reconcile. Edit the manifest while it runs (shards: "
            "5) and it walks the same warm-up the operator would. Ctrl-C stops everything."
        ),
    )
    up.add_argument(
        "manifest",
        nargs="?",
        type=Path,
        default=DEFAULT_MANIFEST,
        help=f"CacheCluster YAML (default {DEFAULT_MANIFEST})",
    )
    up.add_argument("--port", type=int, help="the sidecar's port (default: spec.sidecar.port)")
    up.add_argument(
        "--admin-port", type=int, help="its admin port (default: spec.sidecar.adminPort)"
    )
    up.add_argument("--dir", type=Path, help="where the servers' files go (default: a temp dir)")
    up.set_defaults(handler=run_up_command)

    demo = subparsers.add_parser(
        "demo",
        help="the product doing its job on this machine, in about a minute and a half",
        description=(
            "A scripted story on a local fleet: steady traffic, a celebrity key served from L1, "
            "a shard killed and served by the gutter, a 4 -> 5 scale-out warmed before its "
            "cut-over against an immediate one. Prints what it measured and writes a chart."
        ),
    )
    demo.add_argument(
        "--dir",
        type=Path,
        default=Path("cachefleet-demo"),
        help="where the chart and the servers' files go (default cachefleet-demo)",
    )
    demo.add_argument("--quick", action="store_true", help="shorter acts (the tests use it)")
    demo.set_defaults(handler=run_demo_command)


def run_up_command(args: argparse.Namespace) -> int:
    from cachefleet_operator.local.processes import LocalError
    from cachefleet_operator.local.up import run_up

    try:
        return run_up(args.manifest, port=args.port, admin_port=args.admin_port, directory=args.dir)
    except LocalError as error:
        raise UsageError(str(error)) from None


def run_demo_command(args: argparse.Namespace) -> int:
    from cachefleet_operator.local.demo import run_demo
    from cachefleet_operator.local.processes import LocalError

    try:
        return run_demo(args.dir, args.quick)
    except LocalError as error:
        raise UsageError(str(error)) from None
