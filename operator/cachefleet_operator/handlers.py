"""The kopf side: when to reconcile a CacheCluster, and carrying out what the reconciler plans.

kopf gives us the watch stream; scheduling is ours. Every watch event lands in ``Scheduler``,
which runs one reconcile per object at a time in a small thread pool and schedules the next one
at the plan's ``requeue_after`` (a warm-up step) or the resync period. Only ``@kopf.on.event``
is registered, so kopf itself writes nothing to a CacheCluster: no finalizer (deleting a
CacheCluster never waits for the operator; garbage collection removes the children), no
progress or diff-base annotations, and an idle resync makes zero write calls. Everything the
warm-up needs to resume lives in the CacheCluster's status, so a restarted operator simply
reconciles every object it lists and carries on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from cachefleet_operator import naming
from cachefleet_operator.children.context import PASSWORD_KEY
from cachefleet_operator.children.secret import new_password
from cachefleet_operator.kube import GROUP, PLURAL, VERSION, Kube, KubeError
from cachefleet_operator.plan import EventSpec, Observed, ReconcilePlan
from cachefleet_operator.reconcile import reconcile
from cachefleet_operator.warmup_signal import WarmupSignal, observe_signal, warmup_target

logger = logging.getLogger("cachefleet.operator")

FAILED_REASON = "ReconcileFailed"


@dataclass(frozen=True)
class OperatorRuntime:
    kube: Kube
    signal: WarmupSignal
    # Look again this often even when nothing changed: re-create deleted children and refresh
    # readiness (edits that keep a child's applied-hash are not reverted; see the docs).
    resync_seconds: float = 60.0
    # After a failed reconcile (API down, a bug), try again this much later.
    error_backoff_seconds: float = 10.0
    workers: int = 4


@dataclass(frozen=True)
class ReconcileResult:
    requeue_after: float | None
    requests: Counter[str]
    writes: int
    seconds: float
    generation: int | None


def _now() -> datetime:
    return datetime.now(UTC)


def _password(
    kube: Kube, cluster: dict[str, Any], children: dict[tuple[str, str], Any]
) -> str | None:
    auth = (cluster.get("spec") or {}).get("auth") or {}
    if auth.get("enabled", True) is False:
        return None
    existing = auth.get("existingSecret")
    if existing:
        secret = kube.get_secret(cluster["metadata"]["namespace"], existing["name"])
        key = existing.get("key", PASSWORD_KEY)
    else:
        secret = children.get(("Secret", naming.auth_secret(cluster["metadata"]["name"])))
        key = PASSWORD_KEY
    encoded = ((secret or {}).get("data") or {}).get(key)
    return base64.b64decode(encoded).decode() if encoded else None


def _carry_out(
    kube: Kube, cluster: dict[str, Any], observed: Observed, plan: ReconcilePlan
) -> None:
    """Do what the plan says, in an order that never leaves the fleet without a shard.

    New children first (new shards before any ring points at them), then removals, then the
    status that records the step, then the events that announce it.
    """
    namespace = cluster["metadata"]["namespace"]
    for manifest in plan.create_if_absent:
        manifest.setdefault("metadata", {}).setdefault("namespace", namespace)
        kube.create_if_absent(manifest, observed.children.get(_key(manifest)))
    for manifest in plan.apply:
        manifest.setdefault("metadata", {}).setdefault("namespace", namespace)
        kube.apply(manifest, observed.children.get(_key(manifest)))
    for ref in plan.delete:
        if (ref.kind, ref.name) in observed.children:
            kube.delete(ref, namespace)
    if plan.status:
        kube.patch_status(cluster, plan.status)
    for event in plan.events:
        kube.post_event(cluster, event)


def _key(manifest: dict[str, Any]) -> tuple[str, str]:
    return (manifest["kind"], manifest["metadata"]["name"])


def _failed_status(live: dict[str, Any], message: str, now: datetime) -> dict[str, Any]:
    """The live status with a Degraded=True condition saying why the reconcile failed."""
    status = copy.deepcopy(live)
    conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
    condition = {
        "type": "Degraded",
        "status": "True",
        "reason": FAILED_REASON,
        "message": message,
        "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    for index, existing in enumerate(conditions):
        if existing.get("type") == "Degraded":
            if existing.get("status") == "True":
                condition["lastTransitionTime"] = existing.get(
                    "lastTransitionTime", condition["lastTransitionTime"]
                )
            conditions[index] = condition
            break
    else:
        conditions.append(condition)
    status["conditions"] = conditions
    return status


def _report_failure(kube: Kube, cluster: dict[str, Any], message: str) -> None:
    """Degraded condition and a Warning event, each written only when the message is new."""
    live = cluster.get("status") or {}
    conditions: list[dict[str, Any]] = live.get("conditions") or []
    previous = next((c for c in conditions if c.get("type") == "Degraded"), {})
    if previous.get("reason") == FAILED_REASON and previous.get("message") == message:
        return
    kube.patch_status(cluster, _failed_status(live, message, _now()))
    kube.post_event(cluster, EventSpec(type="Warning", reason=FAILED_REASON, message=message))


def reconcile_once(runtime: OperatorRuntime, namespace: str, name: str) -> ReconcileResult | None:
    """Observe, reconcile, carry out. None when the CacheCluster is gone or going."""
    kube = runtime.kube.counted()
    started = time.monotonic()
    cluster = kube.get_cluster(namespace, name)
    if cluster is None or cluster["metadata"].get("deletionTimestamp"):
        return None
    generation = cluster["metadata"].get("generation")
    requeue_after: float | None
    try:
        now = _now()
        children = kube.list_children(namespace, name)
        target = warmup_target(cluster, _password(kube, cluster, children))
        reading = observe_signal(runtime.signal, target, now)
        observed = Observed(
            now=now,
            children=children,
            generated_password=new_password(),
            warmup=reading.warmup,
            sidecars=reading.sidecars,
            leftovers=reading.leftovers,
        )
        plan = reconcile(copy.deepcopy(cluster), observed)
        _carry_out(kube, cluster, observed, plan)
        requeue_after = plan.requeue_after
    except KubeError as error:
        if error.status == 409:
            # Someone wrote the CacheCluster between our read and our status write: the plan
            # was computed from a stale status, so compute it again from the fresh one.
            logger.info("%s/%s: conflict, reconciling again: %s", namespace, name, error)
            requeue_after = 0.5
        else:
            _fail(kube, cluster, f"Kubernetes API: {error}")
            requeue_after = runtime.error_backoff_seconds
    except Exception as error:
        logger.exception("%s/%s: reconcile failed", namespace, name)
        _fail(kube, cluster, f"{type(error).__name__}: {error}")
        requeue_after = runtime.error_backoff_seconds
    seconds = time.monotonic() - started
    logger.info(
        "reconciled %s/%s in %.3fs: requests=%s writes=%d requeue_after=%s",
        namespace,
        name,
        seconds,
        dict(sorted(kube.counts.items())),
        kube.writes,
        requeue_after,
    )
    return ReconcileResult(requeue_after, Counter(kube.counts), kube.writes, seconds, generation)


def _fail(kube: Kube, cluster: dict[str, Any], message: str) -> None:
    try:
        _report_failure(kube, cluster, message)
    except KubeError as error:
        # Cannot even say so on the object (API down): the log is all that is left.
        logger.error(
            "%s: could not report failure %r: %s", cluster["metadata"]["name"], message, error
        )


@dataclass
class _Tracked:
    namespace: str
    name: str
    due: float
    uid: str | None = None
    generation: int | None = None
    running: bool = False
    # Changed while a reconcile was running: reconcile again as soon as it ends.
    dirty: bool = False


@dataclass
class Scheduler:
    """One reconcile at a time per CacheCluster, each at its due time.

    All bookkeeping happens on the event loop; only ``reconcile_once`` runs in worker threads.
    """

    runtime: OperatorRuntime
    tracked: dict[tuple[str, str], _Tracked] = field(default_factory=dict)
    # Leader election: only the Lease's holder reconciles; the others keep ``tracked`` warm.
    may_act: Callable[[], bool] = lambda: True
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _executor: ThreadPoolExecutor | None = None

    def leadership_changed(self, leading: bool) -> None:
        """A new leader looks at everything at once: the old one may have left work behind."""
        if leading:
            now = time.monotonic()
            for entry in self.tracked.values():
                entry.due = min(entry.due, now)
        self._wake.set()

    def notice(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self.tracked.pop(key, None)
            return
        generation = meta.get("generation")
        entry = self.tracked.get(key)
        if entry is None or entry.uid != meta.get("uid"):
            # New, or deleted and created again under the same name while we looked away.
            self.tracked[key] = _Tracked(
                key[0], key[1], due=time.monotonic(), uid=meta.get("uid"), generation=generation
            )
        elif generation != entry.generation:
            # A spec change (or our own first sight of it): act now, not at the next resync.
            # Status-only changes (our own writes) keep the generation and wake nothing.
            if entry.running:
                entry.dirty = True
            else:
                entry.due = time.monotonic()
        else:
            return
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(self.runtime.workers, thread_name_prefix="reconcile")
        try:
            while True:
                self._wake.clear()
                now = time.monotonic()
                next_due = now + self.runtime.resync_seconds
                if not self.may_act():
                    # A follower: watch only. Leadership changes wake us; look now and then
                    # anyway, in case a renewal lapsed without a change being reported.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                    continue
                for entry in list(self.tracked.values()):
                    if entry.running:
                        continue
                    if entry.due <= now:
                        self._start(loop, entry)
                    else:
                        next_due = min(next_due, entry.due)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, next_due - now))
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _start(self, loop: asyncio.AbstractEventLoop, entry: _Tracked) -> None:
        assert self._executor is not None
        entry.running = True
        entry.dirty = False
        future = loop.run_in_executor(
            self._executor, reconcile_once, self.runtime, entry.namespace, entry.name
        )
        future.add_done_callback(lambda done: self._finished(entry, done))

    def _finished(self, entry: _Tracked, done: asyncio.Future[ReconcileResult | None]) -> None:
        entry.running = False
        if self.tracked.get((entry.namespace, entry.name)) is not entry:
            return  # deleted (or replaced by a namesake) meanwhile
        delay = self.runtime.resync_seconds
        if done.cancelled():
            return
        error = done.exception()
        if error is not None:
            logger.error("%s/%s: reconcile crashed: %r", entry.namespace, entry.name, error)
            delay = self.runtime.error_backoff_seconds
        else:
            result = done.result()
            if result is None:
                # Gone or being deleted: stop tracking until the watch says otherwise.
                del self.tracked[(entry.namespace, entry.name)]
                return
            entry.generation = result.generation
            if result.requeue_after is not None:
                delay = min(delay, max(0.0, result.requeue_after))
        entry.due = time.monotonic() + (0.0 if entry.dirty else delay)
        self._wake.set()


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # We post our own Events (reasons the reconciler chose); kopf's would be writes on every
    # handler run and break "an idle resync writes nothing".
    settings.posting.enabled = False
    # A server-side watch timeout makes a lost connection show up within a minute.
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    # No runtime scanning of CRDs and namespaces: it needs cluster-wide list/watch of both,
    # more than the operator's RBAC grants (the namespaces are given, the CRD is ours).
    settings.scanning.disabled = True
    return settings


def build_registry(
    scheduler: Scheduler,
    *,
    on_event: Callable[[str | None, dict[str, Any]], None] = lambda kind, body: None,
    on_startup: Callable[[], Awaitable[None]] | None = None,
    on_cleanup: Callable[[], Awaitable[None]] | None = None,
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    tasks: list[asyncio.Task[None]] = []

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        # The same credentials as our own client: in-cluster, else $KUBECONFIG.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def start_scheduler(**_: Any) -> None:
        tasks.append(asyncio.create_task(scheduler.run(), name="cachefleet-scheduler"))
        if on_startup is not None:
            await on_startup()

    @kopf.on.cleanup(registry=registry)
    async def stop_scheduler(**_: Any) -> None:
        if on_cleanup is not None:
            await on_cleanup()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def cachecluster_event(**kwargs: Any) -> None:
        event = kwargs["event"]
        body = event.get("object") or {}
        scheduler.notice(event.get("type"), body)
        on_event(event.get("type"), body)

    return registry
