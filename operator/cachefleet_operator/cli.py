"""``cachefleet operator`` and ``cachefleet crd``.

Importing this module must stay cheap: kopf and the Kubernetes client are imported only inside
the handlers, so ``cachefleet sidecar`` and ``cachefleet ring`` never load them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

from cachefleet.cli import UsageError


def register(subparsers: Any) -> None:
    operator = subparsers.add_parser(
        "operator",
        help="run the CacheCluster operator (kopf) in this process",
        description="Reconcile CacheClusters into Redis shards, sidecar ConfigMaps and warm-ups.",
    )
    scope = operator.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable); default: the kubeconfig's namespace",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch CacheClusters in all namespaces"
    )
    operator.add_argument(
        "--warmup-signal",
        default="redis",
        metavar="redis|file:PATH",
        help="where warm-up hit ratios come from: what the sidecars measured, read on the "
        'warming shards (default), or a JSON file {"hitRatio": 0.95}',
    )
    operator.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="kubeconfig file (default: in-cluster, then $KUBECONFIG)",
    )
    operator.add_argument(
        "--resync-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="look at every CacheCluster at least this often (default 60)",
    )
    operator.add_argument(
        "--workers", type=int, default=4, metavar="N", help="reconciles run in parallel (default 4)"
    )
    operator.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    operator.set_defaults(handler=run_operator)

    crd = subparsers.add_parser(
        "crd",
        help="print the CacheCluster CustomResourceDefinition (YAML)",
        description="Print the CacheCluster CRD generated from the API models.",
    )
    crd.set_defaults(handler=print_crd)


def _default_namespace(kubeconfig: str | None) -> str:
    # Typed as Any: the client's config helpers carry no annotations.
    config: Any = importlib.import_module("kubernetes.config")
    try:
        _, context = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError):
        in_cluster = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
        if os.path.exists(in_cluster):
            with open(in_cluster) as handle:
                return handle.read().strip()
        return "default"
    namespace: str = context.get("context", {}).get("namespace") or "default"
    return namespace


def run_operator(args: argparse.Namespace) -> int:
    from cachefleet_operator.warmup_signal import WarmupSignalError, parse_warmup_signal

    if args.resync_seconds <= 0:
        raise UsageError("--resync-seconds must be positive")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    try:
        signal = parse_warmup_signal(args.warmup_signal)
    except WarmupSignalError as error:
        raise UsageError(str(error)) from None
    if args.kubeconfig is not None:
        if not os.path.exists(args.kubeconfig):
            raise UsageError(f"--kubeconfig {args.kubeconfig}: no such file")
        # kopf logs in through the same kubeconfig as our own client.
        os.environ["KUBECONFIG"] = args.kubeconfig

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        # kopf logs every watch event it hands us; our own line per reconcile says more.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    from cachefleet_operator import handlers
    from cachefleet_operator.kube import Kube

    namespaces: list[str] = [] if args.all_namespaces else args.namespace
    if not args.all_namespaces and not namespaces:
        namespaces = [_default_namespace(args.kubeconfig)]
    kube = Kube.connect(args.kubeconfig)
    runtime = handlers.OperatorRuntime(
        kube=kube, signal=signal, resync_seconds=args.resync_seconds, workers=args.workers
    )
    try:
        handlers.run(runtime, namespaces=namespaces, clusterwide=args.all_namespaces)
    finally:
        kube.close()
    return 0


def print_crd(args: argparse.Namespace) -> int:
    from cachefleet_operator.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0
