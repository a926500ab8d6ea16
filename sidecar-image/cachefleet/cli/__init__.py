"""The ``cachefleet`` console command.

Each subcommand lives in its own module with a ``register(subparsers)`` function. Control-plane
subcommands come from ``cachefleet_operator.cli`` when that package is installed; importing it
must stay cheap (no kopf or Kubernetes client at import time), so ``cachefleet sidecar`` starts
fast and the sidecar image can leave the operator out entirely.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

# Data-plane subcommands first, then the control plane's when it is installed.
SUBCOMMAND_MODULES = (
    "cachefleet.cli.ring",
    "cachefleet.cli.sidecar",
    "cachefleet.cli.sim",
    "cachefleet_operator.cli",
    "cachefleet_operator.local.cli",
)

EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit status 2."""


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        # Only a missing optional part is fine; a broken import inside it is a bug to show.
        if error.name is not None and name.startswith(error.name):
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cachefleet", description="Sharded Redis cache fleets: ring, sidecar and operator."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        module = _load(name)
        if module is not None:
            module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except UsageError as error:
        print(f"cachefleet {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
