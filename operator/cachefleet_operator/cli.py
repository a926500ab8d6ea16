"""``cachefleet operator``, ``cachefleet crd`` and ``cachefleet rbac``.

Importing this module must stay cheap: kopf and the Kubernetes client are imported only inside
the handlers, so ``cachefleet sidecar`` and ``cachefleet ring`` never load them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import secrets
import socket
import sys
from typing import Any

from cachefleet.cli import UsageError

from cachefleet_operator.leader import ElectionTiming
from cachefleet_operator.permissions import LEASE_NAME, WEBHOOK_CONFIGURATION, WEBHOOK_SECRET

_IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


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
    operator.add_argument(
        "--operator-namespace",
        metavar="NS",
        help="where the Lease and the webhook's Secret live (default: $POD_NAMESPACE, in a pod "
        "its own namespace, else the first watched namespace)",
    )
    operator.add_argument(
        "--identity",
        metavar="ID",
        help="this replica's name in the Lease (default: $POD_NAME, else host name + random)",
    )
    election = operator.add_argument_group("leader election")
    election.add_argument(
        "--no-leader-elect",
        dest="leader_elect",
        action="store_false",
        help="act without holding the Lease (a single replica only)",
    )
    election.add_argument("--lease-name", default=LEASE_NAME, metavar="NAME")
    election.add_argument(
        "--lease-seconds",
        type=float,
        default=ElectionTiming.lease_seconds,
        metavar="S",
        help="lease duration (%(default)g)",
    )
    election.add_argument(
        "--renew-deadline",
        type=float,
        default=ElectionTiming.renew_deadline,
        metavar="S",
        help="the leader stops acting this long after its last renewal (%(default)g)",
    )
    election.add_argument(
        "--retry-seconds",
        type=float,
        default=ElectionTiming.retry_seconds,
        metavar="S",
        help="how often the Lease is renewed or looked at (%(default)g)",
    )
    hook = operator.add_argument_group("sidecar-injection webhook")
    hook.add_argument(
        "--webhook-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve the webhook on this HTTPS port (the chart: 9443); default 0: no webhook",
    )
    hook.add_argument(
        "--webhook-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a DNS name or IP the serving certificate must cover (repeatable)",
    )
    hook.add_argument(
        "--webhook-service",
        metavar="NAME",
        help="the webhook's Service: adds NAME.NS.svc (and .cluster.local) to the certificate",
    )
    hook.add_argument("--webhook-secret", default=WEBHOOK_SECRET, metavar="NAME")
    hook.add_argument("--webhook-configuration", default=WEBHOOK_CONFIGURATION, metavar="NAME")
    hook.add_argument(
        "--webhook-certs",
        choices=("operator", "cert-manager"),
        default="operator",
        help="who makes the certificates and the caBundle (default: operator)",
    )
    hook.add_argument(
        "--native-sidecars",
        choices=("auto", "on", "off"),
        default="auto",
        help="inject the sidecar as a native sidecar (auto: on Kubernetes 1.29+)",
    )
    operator.set_defaults(handler=run_operator)

    rbac = subparsers.add_parser(
        "rbac",
        help="print the operator's RBAC (Roles and bindings, YAML), generated from its code",
        description="Print the least-privilege RBAC the operator needs, from the same table "
        "its API calls are checked against.",
    )
    rbac_scope = rbac.add_mutually_exclusive_group()
    rbac_scope.add_argument(
        "--namespace", "-n", action="append", default=[], metavar="NS", help="a watched namespace"
    )
    rbac_scope.add_argument("--all-namespaces", "-A", action="store_true")
    rbac.add_argument("--operator-namespace", default="cachefleet-system", metavar="NS")
    rbac.add_argument("--service-account", default="cachefleet-operator", metavar="NAME")
    rbac.add_argument(
        "--chart-rules",
        action="store_true",
        help="print the rules by scope, as the Helm chart keeps them (files/rbac-rules.yaml)",
    )
    rbac.set_defaults(handler=print_rbac)

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
        return _own_namespace() or "default"
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
    from cachefleet_operator import handlers, permissions, process
    from cachefleet_operator.kube import Kube

    namespaces: list[str] = [] if args.all_namespaces else args.namespace
    if not args.all_namespaces and not namespaces:
        namespaces = [_default_namespace(args.kubeconfig)]
    timing = ElectionTiming(args.lease_seconds, args.renew_deadline, args.retry_seconds)
    if timing.problems():
        raise UsageError("; ".join(timing.problems()))
    if not 0 <= args.webhook_port <= 65_535:
        raise UsageError("--webhook-port must be 0..65535")
    own = (
        args.operator_namespace or _own_namespace() or (namespaces[0] if namespaces else "default")
    )
    identity = args.identity or os.environ.get("POD_NAME") or _random_identity()
    hosts = list(args.webhook_host)
    if args.webhook_service:
        service = f"{args.webhook_service}.{own}.svc"
        hosts += [service, f"{service}.cluster.local"]
    if args.webhook_port and not hosts:
        raise UsageError("--webhook-port needs --webhook-service or --webhook-host")
    names = (
        (LEASE_NAME, args.lease_name),
        (WEBHOOK_SECRET, args.webhook_secret),
        (WEBHOOK_CONFIGURATION, args.webhook_configuration),
    )
    grant = permissions.Grant(
        own_namespace=own,
        watched=None if args.all_namespaces else frozenset(namespaces),
        names=names,
    )
    from cachefleet_operator import __version__

    kube = Kube.connect(
        args.kubeconfig, grant=grant, user_agent=f"cachefleet-operator/{__version__} ({identity})"
    )
    runtime = handlers.OperatorRuntime(
        kube=kube, signal=signal, resync_seconds=args.resync_seconds, workers=args.workers
    )
    options = process.ProcessOptions(
        runtime=runtime,
        identity=identity,
        operator_namespace=own,
        namespaces=tuple(namespaces),
        clusterwide=args.all_namespaces,
        leader_election=args.leader_elect,
        lease_name=args.lease_name,
        timing=timing,
        webhook=process.WebhookOptions(
            port=args.webhook_port,
            hosts=tuple(hosts),
            secret=args.webhook_secret,
            configuration=args.webhook_configuration,
            certs=args.webhook_certs,
            native_sidecars=args.native_sidecars,
        ),
    )
    logging.getLogger("cachefleet.operator").info(
        "operator %s: watching %s, lease %s/%s",
        identity,
        "all namespaces" if args.all_namespaces else ", ".join(namespaces),
        own,
        args.lease_name,
    )
    try:
        process.run(options)
    finally:
        kube.close()
    return 0


def _own_namespace() -> str | None:
    """The namespace this process runs in: $POD_NAMESPACE (the chart sets it), else its
    service account's; None outside a pod."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if os.path.exists(_IN_CLUSTER_NAMESPACE):
        with open(_IN_CLUSTER_NAMESPACE) as handle:
            return handle.read().strip()
    return None


def _random_identity() -> str:
    return f"{socket.gethostname()}_{secrets.token_hex(4)}"


def print_rbac(args: argparse.Namespace) -> int:
    from cachefleet_operator import rbac

    if args.chart_rules:
        sys.stdout.write(rbac.chart_rules_yaml())
        return 0
    watched = None if args.all_namespaces else (args.namespace or [args.operator_namespace])
    documents = rbac.manifests(
        service_account=args.service_account,
        operator_namespace=args.operator_namespace,
        watched=watched,
    )
    sys.stdout.write(rbac.manifests_yaml(documents))
    return 0


def print_crd(args: argparse.Namespace) -> int:
    from cachefleet_operator.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0
