"""One operator process: the watch, leader election, the scheduler, the webhook and its TLS.

Every replica watches (kopf) and serves the webhook. The holder of the Lease also reconciles,
keeps the webhook's certificates and caBundle current, and looks for pods that started without
their sidecar. Writes of a replica that is not the leader are refused before they are sent
(``Kube.set_write_fence``), so a replica that lost the Lease mid-reconcile stops writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal

import kopf

from cachefleet_operator import handlers, sidecar_audit
from cachefleet_operator.kube import Kube, KubeError
from cachefleet_operator.labels import CLUSTER
from cachefleet_operator.leader import ElectionTiming
from cachefleet_operator.leadership import Leadership
from cachefleet_operator.permissions import LEASE_NAME, WEBHOOK_CONFIGURATION, WEBHOOK_SECRET
from cachefleet_operator.webhook.server import ClusterCache, Webhook
from cachefleet_operator.webhook.tls import CertSource, TlsKeeper, safely

logger = logging.getLogger("cachefleet.operator")

NATIVE_SIDECARS_SINCE = (1, 29)


@dataclass(frozen=True)
class WebhookOptions:
    port: int = 9443  # 0: no webhook in this process
    hosts: tuple[str, ...] = ()
    secret: str = WEBHOOK_SECRET
    configuration: str = WEBHOOK_CONFIGURATION
    certs: CertSource = "operator"
    # Seconds between looks at the Secret (every replica) and renewals (the leader).
    check_seconds: float = 30.0
    native_sidecars: Literal["auto", "on", "off"] = "auto"


@dataclass(frozen=True)
class ProcessOptions:
    runtime: handlers.OperatorRuntime
    identity: str
    operator_namespace: str
    namespaces: tuple[str, ...] = ()
    clusterwide: bool = False
    leader_election: bool = True
    lease_name: str = LEASE_NAME
    timing: ElectionTiming = field(default_factory=ElectionTiming)
    webhook: WebhookOptions = field(default_factory=WebhookOptions)


@dataclass
class _Parts:
    options: ProcessOptions
    scheduler: handlers.Scheduler
    cache: ClusterCache
    leadership: Leadership | None
    tls: TlsKeeper | None
    webhook: Webhook | None
    native: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    warned: set[str] = field(default_factory=set)

    @property
    def kube(self) -> Kube:
        return self.options.runtime.kube

    def leading(self) -> bool:
        return self.leadership is None or self.leadership.is_leader()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.native = await asyncio.to_thread(self._detect_native_sidecars)
        if self.webhook is not None:
            self.webhook.native_sidecars = self.native
        if self.leadership is not None:
            leadership = self.leadership

            def changed(leading: bool) -> None:
                loop.call_soon_threadsafe(self.scheduler.leadership_changed, leading)

            leadership.on_change = changed
            leadership.start()
        if self.tls is not None:
            self.tasks.append(asyncio.create_task(self._keep_tls(), name="cachefleet-tls"))
        self.tasks.append(asyncio.create_task(self._audit_pods(), name="cachefleet-pod-audit"))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.webhook is not None:
            await self.webhook.stop()
        if self.leadership is not None:
            await asyncio.to_thread(self.leadership.stop)

    def _detect_native_sidecars(self) -> bool:
        setting = self.options.webhook.native_sidecars
        if setting != "auto":
            return setting == "on"
        try:
            version = self.kube.server_version()
        except KubeError as error:
            logger.warning("server version unknown (%s): injecting regular containers", error)
            return False
        native = version >= NATIVE_SIDECARS_SINCE
        logger.info(
            "API server %d.%d: sidecars injected as %s",
            *version,
            "native sidecars (init containers, restartPolicy Always)" if native else "containers",
        )
        return native

    async def _keep_tls(self) -> None:
        assert self.tls is not None
        tls = self.tls
        serving = False
        while True:
            if self.leading():
                await asyncio.to_thread(safely, "keeping the certificates", tls.maintain)
            loaded = await asyncio.to_thread(safely, "loading the certificate", tls.refresh)
            if loaded and not serving and self.webhook is not None:
                await self.webhook.start()
                serving = True
            # Until the first certificate exists, look often: the leader is making it.
            await asyncio.sleep(self.options.webhook.check_seconds if serving else 1.0)

    async def _audit_pods(self) -> None:
        while True:
            await asyncio.sleep(self.options.runtime.resync_seconds)
            if self.leading():
                await asyncio.to_thread(
                    safely, "looking for pods without sidecar", self._audit_once
                )

    def _audit_once(self) -> None:
        kube = self.kube.counted()
        namespaces: Collection[str] = self.options.namespaces
        pods: list[dict[str, Any]] = []
        if self.options.clusterwide:
            listing = kube.request(
                "LIST", "GET", "/api/v1/pods", query={"labelSelector": sidecar_audit.SELECTOR}
            )
            pods = listing.get("items", [])
        else:
            for namespace in namespaces:
                pods += kube.list_pods(namespace, sidecar_audit.SELECTOR)
        for pod in sidecar_audit.without_sidecar(pods):
            meta = pod["metadata"]
            cluster = (meta.get("labels") or {}).get(CLUSTER, "")
            if (
                meta.get("uid") in self.warned
                or (meta["namespace"], cluster) not in self.cache.objects
            ):
                # Warned already, or naming a CacheCluster that does not exist: the webhook
                # said so when it admitted the pod.
                continue
            involved = {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            }
            kube.post_event_about(
                meta["namespace"], involved, sidecar_audit.warning(pod), name_prefix=meta["name"]
            )
            self.warned.add(meta.get("uid", ""))


def build(options: ProcessOptions) -> tuple[handlers.Scheduler, _Parts]:
    kube = options.runtime.kube
    leadership = None
    if options.leader_election:
        leadership = Leadership(
            kube=kube,
            identity=options.identity,
            namespace=options.operator_namespace,
            name=options.lease_name,
            timing=options.timing,
        )
        kube.set_write_fence(leadership.is_leader)
    scheduler = handlers.Scheduler(
        options.runtime,
        may_act=leadership.is_leader if leadership is not None else (lambda: True),
    )
    cache = ClusterCache()
    tls = webhook = None
    hook = options.webhook
    if hook.port:
        tls = TlsKeeper(
            kube=kube,
            namespace=options.operator_namespace,
            secret_name=hook.secret,
            configuration_name=hook.configuration,
            hosts=list(hook.hosts),
            source=hook.certs,
        )
        webhook = Webhook(
            kube=kube,
            cache=cache,
            namespaces=None if options.clusterwide else set(options.namespaces),
            tls=tls,
            port=hook.port,
        )
    return scheduler, _Parts(options, scheduler, cache, leadership, tls, webhook)


def run(options: ProcessOptions) -> None:
    """Run the operator in this process until it is interrupted."""
    scheduler, parts = build(options)
    on_startup: Callable[[], Awaitable[None]] = parts.start
    registry = handlers.build_registry(
        scheduler, on_event=parts.cache.notice, on_startup=on_startup, on_cleanup=parts.stop
    )
    with contextlib.suppress(KeyboardInterrupt):
        kopf.run(
            registry=registry,
            settings=handlers.operator_settings(),
            standalone=True,
            clusterwide=options.clusterwide,
            namespaces=list(options.namespaces),
        )
