"""A CacheCluster run on this machine by the operator's own code.

``LocalFleet`` plays the Kubernetes API and the kubelet around the operator's pure
``reconcile()``: it keeps the CacheCluster (spec and status) and the children the plans apply,
starts one redis-server per shard and per gutter member from the StatefulSets (with the
operator's redis.conf for each role), and runs the sidecar with exactly the config the operator
renders, its DNS addresses replaced by the local ones. The warm-up reads the sidecars' own
measurement and reports from the local shards, as the operator does in a cluster. So a capacity
change here walks the same states, on the same signal, as it does in Kubernetes.

What differs: one process per shard (``replicasPerShard`` followers are not started), no
persistence volumes, a dead redis-server is started again at the next reconcile (as its
StatefulSet would), and everything listens on 127.0.0.1.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cachefleet.config import ShardEndpoint, SidecarConfig
from cachefleet.ring import Ring, RingAssignment

from cachefleet_operator.api import SpecError, parse_spec
from cachefleet_operator.api.base import API_VERSION, KIND
from cachefleet_operator.children.context import PASSWORD_KEY
from cachefleet_operator.children.secret import new_password
from cachefleet_operator.children.sidecar_config import CONFIG_KEY
from cachefleet_operator.labels import ROLE, SHARD
from cachefleet_operator.local.processes import (
    LocalError,
    Process,
    RedisProcess,
    check_port_free,
    free_port,
    start_redis,
    start_sidecar,
)
from cachefleet_operator.naming import (
    auth_secret,
    cluster_name_problem,
    gutter_address,
    gutter_member,
    redis_config,
    shard_address,
    sidecar_config,
)
from cachefleet_operator.plan import EventSpec, Manifest, Observed, ReconcilePlan
from cachefleet_operator.reconcile import reconcile
from cachefleet_operator.warmup_signal import RedisWarmupSignal, observe_signal, warmup_target

NAMESPACE = "default"
LOOP_SECONDS = 1.0  # the longest the loop waits between reconciles


def cluster_from_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The CacheCluster as the API server would hold it; LocalError with the operator's
    own words for a manifest it would refuse."""
    if manifest.get("kind") != KIND or manifest.get("apiVersion") != API_VERSION:
        raise LocalError(f"not a {KIND} ({API_VERSION}) manifest")
    meta = manifest.get("metadata") or {}
    name = str(meta.get("name") or "")
    problems = []
    name_problem = cluster_name_problem(name)
    if name_problem is not None:
        problems.append(name_problem)
    try:
        parse_spec(manifest.get("spec"))
    except SpecError as error:
        problems += error.problems
    auth = (manifest.get("spec") or {}).get("auth") or {}
    if auth.get("existingSecret"):
        problems.append(
            "spec.auth.existingSecret names a Secret this machine does not have: leave it out "
            "and the fleet generates a password, as the operator does"
        )
    if problems:
        raise LocalError(f"{KIND} {name or '(no name)'} is invalid: " + "; ".join(problems))
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": str(uuid.uuid4()),
            "generation": 1,
        },
        "spec": copy.deepcopy(manifest.get("spec") or {}),
    }


class LocalFleet:
    def __init__(
        self,
        manifest: dict[str, Any],
        directory: Path,
        *,
        sidecar_port: int | None = None,
        admin_port: int | None = None,
        on_event: Callable[[EventSpec], None] | None = None,
    ) -> None:
        self.cluster = cluster_from_manifest(manifest)
        self.name: str = self.cluster["metadata"]["name"]
        # Resolved: its processes run inside it, so a relative path would name another place.
        self.directory = directory.resolve()
        spec = parse_spec(self.cluster["spec"])
        self.sidecar_port = sidecar_port or spec.sidecar.port
        self.admin_port = admin_port or spec.sidecar.admin_port
        self.on_event = on_event or (lambda event: None)
        self.children: dict[tuple[str, str], Manifest] = {}
        self.redis: dict[str, RedisProcess] = {}  # by member: shard-N, gutter-N
        self.ports: dict[str, int] = {}  # a member keeps its port across restarts
        self.held_down: set[str] = set()  # members a test or the demo keeps down
        self.sidecar: Process | None = None
        self.sidecar_config_path = self.directory / "sidecar.json"
        self.password_file = self.directory / "password"
        self.password: str | None = None
        self.signal = RedisWarmupSignal()
        self.events: list[EventSpec] = []

    # -- the CacheCluster ----------------------------------------------------------------------

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.cluster.get("status") or {})

    @property
    def phase(self) -> str | None:
        return self.status.get("phase")

    def status_ring(self) -> Ring:
        """The ring the sidecars route by now, from the status."""
        return RingAssignment.model_validate(self.status["ring"]["assignment"]).to_ring()

    def edit(self, manifest: dict[str, Any]) -> None:
        """A new manifest for the same CacheCluster (``kubectl apply`` of an edit)."""
        fresh = cluster_from_manifest(manifest)
        if fresh["metadata"]["name"] != self.name:
            raise LocalError(f"the manifest names {fresh['metadata']['name']}, not {self.name}")
        if fresh["spec"] != self.cluster["spec"]:
            self.cluster["spec"] = fresh["spec"]
            self.cluster["metadata"]["generation"] += 1

    def scale(self, shards: int) -> None:
        """``kubectl scale cc/NAME --replicas=N``."""
        manifest = {**self.cluster, "spec": {**self.cluster["spec"], "shards": shards}}
        self.edit(manifest)

    # -- the loop ------------------------------------------------------------------------------

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        check_port_free(self.sidecar_port, "the sidecar")
        check_port_free(self.admin_port, "the sidecar's admin endpoint")

    def reconcile(self) -> ReconcilePlan:
        """Observe, reconcile, carry out: one turn of the operator."""
        now = datetime.now(UTC)
        target = warmup_target(self.cluster, self.password)
        if target is not None:
            local = self._local_addresses()
            target = dataclasses.replace(
                target,
                addresses=tuple(local.get(a, a) for a in target.addresses),
                heartbeat_addresses=tuple(local.get(a, a) for a in target.heartbeat_addresses),
            )
            if target.sweep is not None:
                shards = tuple((shard, local.get(a, a)) for shard, a in target.sweep.shards)
                target = dataclasses.replace(
                    target, sweep=dataclasses.replace(target.sweep, shards=shards)
                )
        reading = observe_signal(self.signal, target, now)
        observed = Observed(
            now=now,
            children=self._observed_children(),
            generated_password=new_password(),
            warmup=reading.warmup,
            sidecars=reading.sidecars,
            leftovers=reading.leftovers,
        )
        plan = reconcile(copy.deepcopy(self.cluster), observed)
        self._carry_out(plan)
        return plan

    def run(
        self,
        until: Callable[[], bool],
        timeout: float = math.inf,
        tick: Callable[[], None] | None = None,
    ) -> None:
        """Reconcile as the operator's scheduler would until ``until()`` holds, calling
        ``tick()`` after each reconcile; with no timeout, until a signal stops it."""
        deadline = time.monotonic() + timeout
        while True:
            plan = self.reconcile()
            if tick is not None:
                tick()
            if until():
                return
            if time.monotonic() > deadline:
                raise LocalError(f"not done after {timeout:g} s; phase {self.phase}")
            wait = plan.requeue_after if plan.requeue_after is not None else LOOP_SECONDS
            time.sleep(max(0.05, min(wait, LOOP_SECONDS)))

    def kill(self, member: str) -> None:
        """``kill -9`` a server and keep it down until ``release`` (a failed node)."""
        self.held_down.add(member)
        process = self.redis.get(member)
        if process is not None:
            process.kill()

    def release(self, member: str) -> None:
        """Let a killed server come back (empty) at the next reconcile, as its pod would."""
        self.held_down.discard(member)

    def stop(self) -> None:
        """Stop every process this fleet started."""
        if self.sidecar is not None:
            self.sidecar.stop()
            self.sidecar = None
        for process in self.redis.values():
            process.stop()
        self.redis.clear()

    # -- carrying out a plan -------------------------------------------------------------------

    def _carry_out(self, plan: ReconcilePlan) -> None:
        for manifest in plan.create_if_absent:
            self.children.setdefault(_key(manifest), manifest)
        for manifest in plan.apply:
            self.children[_key(manifest)] = manifest
        for ref in plan.delete:
            self.children.pop((ref.kind, ref.name), None)
        self.cluster["status"] = plan.status
        for event in plan.events:
            self.events.append(event)
            self.on_event(event)
        self._read_password()
        self._run_redis()
        self._run_sidecar()

    def _read_password(self) -> None:
        secret = self.children.get(("Secret", auth_secret(self.name)))
        if secret is None or self.password is not None:
            return
        plain = (secret.get("stringData") or {}).get(PASSWORD_KEY)
        encoded = (secret.get("data") or {}).get(PASSWORD_KEY)
        if plain is None and encoded is not None:
            plain = base64.b64decode(encoded).decode()
        if plain:
            self.password = str(plain)
            self.password_file.write_text(self.password)
            self.password_file.chmod(0o600)

    def _wanted_members(self) -> dict[str, str]:
        """member -> the redis.conf key of its role, from the StatefulSets that exist."""
        wanted: dict[str, str] = {}
        for (kind, _), manifest in self.children.items():
            if kind != "StatefulSet":
                continue
            labels = manifest["metadata"].get("labels") or {}
            container = manifest["spec"]["template"]["spec"]["containers"][0]
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            conf_key = Path(str(env.get("CONFIG_FILE"))).name
            if labels.get(ROLE) == "shard":
                wanted[labels[SHARD]] = conf_key
            else:
                for index in range(int(manifest["spec"].get("replicas", 1))):
                    wanted[gutter_member(index)] = conf_key
        return wanted

    def _run_redis(self) -> None:
        confs = (self.children.get(("ConfigMap", redis_config(self.name))) or {}).get("data", {})
        wanted = self._wanted_members()
        for member in list(self.redis):
            if member not in wanted:
                self.redis.pop(member).stop()
        for member, conf_key in sorted(wanted.items()):
            running = self.redis.get(member)
            if running is not None and running.alive():
                continue
            if member in self.held_down or conf_key not in confs:
                continue
            needs_password = ("Secret", auth_secret(self.name)) in self.children
            if needs_password and self.password is None:
                continue
            if member not in self.ports:
                # Asked for once per member: free_port never hands a port out twice.
                self.ports[member] = free_port()
            port = self.ports[member]
            self.redis[member] = start_redis(
                f"redis-server {member}",
                confs[conf_key],
                self.directory / member,
                self.password if needs_password else None,
                port,
            )

    def _local_addresses(self) -> dict[str, str]:
        """The operator's DNS address of every running member -> its local address."""
        local = {}
        for member, process in self.redis.items():
            if member.startswith("gutter-"):
                index = int(member.removeprefix("gutter-"))
                local[gutter_address(self.name, index, NAMESPACE)] = process.address
            else:
                local[shard_address(self.name, member, NAMESPACE)] = process.address
        return local

    def local_config(self) -> SidecarConfig | None:
        """The sidecar config the operator rendered, with local addresses; None until every
        server it names runs."""
        config_map = self.children.get(("ConfigMap", sidecar_config(self.name)))
        if config_map is None:
            return None
        config = SidecarConfig.model_validate_json(config_map["data"][CONFIG_KEY])
        local = self._local_addresses()
        try:
            shards = [ShardEndpoint(name=s.name, address=local[s.address]) for s in config.shards]
            members = [
                ShardEndpoint(name=s.name, address=local[s.address]) for s in config.gutter.shards
            ]
        except KeyError:
            return None
        # Only the addresses and the password's path change: every other setting stays the
        # operator's, including any added to the schema later.
        auth = config.auth
        if auth.shard_password_file is not None:
            auth = auth.model_copy(update={"shard_password_file": str(self.password_file)})
        return config.model_copy(
            update={
                "listen": f"127.0.0.1:{self.sidecar_port}",
                "admin_listen": f"127.0.0.1:{self.admin_port}",
                "shards": shards,
                "gutter": config.gutter.model_copy(update={"shards": members}),
                "auth": auth,
            }
        )

    def _run_sidecar(self) -> None:
        config = self.local_config()
        if config is None:
            return
        text = config.to_json()
        path = self.sidecar_config_path
        if not path.exists() or path.read_text() != text:
            staged = path.with_name(path.name + ".new")
            staged.write_text(text)
            staged.replace(path)  # atomic, as a ConfigMap update is
        if self.sidecar is None or not self.sidecar.alive():
            self.sidecar = start_sidecar(path, self.admin_port, self.directory / "sidecar")

    def _observed_children(self) -> dict[tuple[str, str], Manifest]:
        observed = copy.deepcopy(self.children)
        wanted = self._wanted_members()
        for (kind, _), manifest in observed.items():
            if kind != "StatefulSet":
                continue
            members = [m for m, _ in wanted.items() if _owns(manifest, m)]
            ready = sum(1 for m in members if m in self.redis and self.redis[m].alive())
            manifest["status"] = {"readyReplicas": ready, "replicas": len(members)}
        return observed

    def describe(self) -> dict[str, Any]:
        """Where things run, for people."""
        return {
            "sidecar": f"127.0.0.1:{self.sidecar_port}",
            "admin": f"127.0.0.1:{self.admin_port}",
            "servers": {member: p.address for member, p in sorted(self.redis.items())},
            "directory": str(self.directory),
        }


def _key(manifest: Manifest) -> tuple[str, str]:
    return str(manifest["kind"]), str(manifest["metadata"]["name"])


def _owns(statefulset: Manifest, member: str) -> bool:
    labels = statefulset["metadata"].get("labels") or {}
    if labels.get(ROLE) == "shard":
        return bool(labels.get(SHARD) == member)
    return member.startswith("gutter-")
