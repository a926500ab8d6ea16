"""The webhook's HTTPS server (aiohttp, on kopf's event loop), served by every replica.

``POST /mutate-pods`` answers AdmissionReviews with ``admission.answer``. The CacheCluster a
pod names comes from the operator's watch cache (every replica keeps it warm); a miss is
checked with one GET, since a CacheCluster applied together with its app may not have
reached the watch yet. ``GET /healthz`` is the operator container's probe.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cachefleet_operator.injection import SidecarFacts, facts_for_cluster
from cachefleet_operator.kube import Kube, KubeError
from cachefleet_operator.webhook.admission import answer, pod_under_review
from cachefleet_operator.webhook.tls import TlsKeeper

logger = logging.getLogger("cachefleet.operator.webhook")

MUTATE_PATH = "/mutate-pods"


@dataclass
class ClusterCache:
    """CacheCluster objects by (namespace, name), fed by the watch."""

    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def notice(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        if event_type == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = body


@dataclass
class Webhook:
    kube: Kube
    cache: ClusterCache
    # None: every namespace.
    namespaces: Collection[str] | None
    tls: TlsKeeper
    port: int
    host: str = "0.0.0.0"
    # Found from the server's version at start-up (Kubernetes 1.29+).
    native_sidecars: bool = False
    _runner: web.AppRunner | None = None

    def watched(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    async def facts(self, namespace: str, name: str) -> SidecarFacts | None:
        cluster = self.cache.objects.get((namespace, name))
        if cluster is None:
            try:
                cluster = await asyncio.to_thread(self.kube.get_cluster, namespace, name)
            except KubeError as error:
                logger.warning("webhook: looking up %s/%s: %s", namespace, name, error)
                return None
        if cluster is None:
            return None
        return facts_for_cluster(cluster, native_sidecars=self.native_sidecars)

    async def mutate(self, request: web.Request) -> web.Response:
        try:
            review = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": "not an AdmissionReview"}, status=400)
        subject = pod_under_review(review)
        pod, namespace, cluster = subject.pod, subject.namespace, subject.wanted_cluster
        watched = self.watched(namespace)
        facts = await self.facts(namespace, cluster) if cluster and watched else None
        result = answer(review, facts, watched=watched, subject=subject)
        name = (pod.get("metadata") or {}).get("name") or (pod.get("metadata") or {}).get(
            "generateName", ""
        )
        logger.info("webhook: pod %s/%s: %s", namespace, name, result.outcome)
        if result.event is not None and result.involved is not None and watched:
            event, involved = result.event, result.involved
            # Best effort, off the admission's path: the pod is admitted either way.
            asyncio.get_running_loop().run_in_executor(
                None, self._post, result.namespace, involved, event
            )
        return web.json_response(result.review)

    def _post(self, namespace: str, involved: dict[str, Any], event: Any) -> None:
        try:
            self.kube.counted().post_event_about(
                namespace,
                involved,
                event,
                name_prefix=str(involved.get("name") or "pod"),
                fenced=False,
            )
        except KubeError as error:
            logger.warning("webhook: could not post the Event: %s", error)

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def start(self) -> None:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post(MUTATE_PATH, self.mutate)
        app.router.add_get("/healthz", self.healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls.context)
        await site.start()
        logger.info("webhook: serving https://%s:%d%s", self.host, self.port, MUTATE_PATH)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
