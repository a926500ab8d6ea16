"""``cachefleet sidecar``: run the Redis-protocol proxy, from a config file or from flags."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cachefleet.cli import UsageError

DEFAULT_LISTEN = "127.0.0.1:6379"
DEFAULT_ADMIN = "127.0.0.1:9121"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sidecar",
        help="run the sharding Redis proxy",
        description=(
            "Run the sidecar: a Redis-protocol proxy that routes each key to its shard on the "
            "ring. Either --config FILE (reloaded when it changes) or --shards for a classic "
            "ring over shards named by their addresses."
        ),
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="SidecarConfig JSON file")
    parser.add_argument("--listen", metavar="HOST:PORT", help=f"default {DEFAULT_LISTEN}")
    parser.add_argument("--shards", metavar="HOST:PORT,...", help="shard addresses")
    parser.add_argument("--admin", metavar="HOST:PORT", help=f"default {DEFAULT_ADMIN}")
    parser.add_argument("--pool-size", type=int, metavar="N", help="connections per shard")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    parser.set_defaults(handler=run_sidecar)


def build_config(args: argparse.Namespace) -> Any:
    from cachefleet.config import PoolConfig, ShardEndpoint, SidecarConfig, load_config
    from cachefleet.ring import RingAssignment, RingError, Shard, classic_ring

    if args.config is not None:
        if args.shards:
            raise UsageError("give either --config or --shards, not both")
        try:
            config = load_config(args.config)
        except OSError as error:
            raise UsageError(f"cannot read {args.config}: {error.strerror or error}") from None
        except (ValidationError, ValueError) as error:
            raise UsageError(f"invalid config {args.config}: {_one_line(error)}") from None
        overrides: dict[str, Any] = {}
        if args.listen:
            overrides["listen"] = args.listen
        if args.admin:
            overrides["admin_listen"] = args.admin
        if args.pool_size is not None:
            overrides["pool"] = config.pool.model_copy(
                update={"connections_per_shard": args.pool_size}
            )
        if not overrides:
            return config
        data = config.model_dump() | overrides
        try:
            return SidecarConfig.model_validate(data)
        except ValidationError as error:
            raise UsageError(_one_line(error)) from None
    if not args.shards:
        raise UsageError("give --config FILE or --shards HOST:PORT,...")
    addresses = [a.strip() for a in args.shards.split(",") if a.strip()]
    try:
        ring = classic_ring([Shard(address) for address in addresses])
        return SidecarConfig(
            listen=args.listen or DEFAULT_LISTEN,
            admin_listen=args.admin or DEFAULT_ADMIN,
            shards=[ShardEndpoint(name=a, address=a) for a in addresses],
            ring=RingAssignment.from_ring(ring),
            pool=PoolConfig(connections_per_shard=args.pool_size or 1),
        )
    except (ValidationError, RingError) as error:
        raise UsageError(_one_line(error)) from None


def _one_line(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
            for e in error.errors()[:5]
        )
    return str(error).replace("\n", " ")


def run_sidecar(args: argparse.Namespace) -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = build_config(args)
    from cachefleet.sidecar.app import run

    try:
        return run(config, args.config)
    except OSError as error:  # the listen or admin port is taken, typically
        logging.getLogger("cachefleet.sidecar").error("cannot start: %s", error)
        return 1
