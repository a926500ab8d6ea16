"""The one module that talks to the Kubernetes API.

Everything else in the operator is plain data in and out; this module turns a ``ReconcilePlan``
into API calls and gathers the live children the reconciler observes. It speaks plain REST
through the kubernetes client's ``ApiClient`` (serialisation, auth, TLS) rather than the typed
APIs, so one code path serves every kind and every request is counted: the benchmark reports
requests per reconcile, and an idle resync must make no write call at all.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from cachefleet_operator import permissions
from cachefleet_operator.plan import APPLIED_HASH_ANNOTATION, ChildRef, EventSpec, Manifest

FIELD_MANAGER = "cachefleet-operator"
GROUP = "cachefleet.io"
VERSION = "v1alpha1"
PLURAL = "cacheclusters"
CLUSTER_LABEL = "cachefleet.io/cluster"

# Kinds the operator creates, with the API path segment each lives under.
_PLURALS: dict[str, str] = {
    "StatefulSet": "statefulsets",
    "Service": "services",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "CacheCluster": PLURAL,
    "Event": "events",
    "Pod": "pods",
    "Lease": "leases",
}
_CHILD_KINDS: tuple[tuple[str, str], ...] = (
    ("apps/v1", "StatefulSet"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("policy/v1", "PodDisruptionBudget"),
)
_TIMEOUT = (5.0, 30.0)  # connect, read seconds: a hung API server must not hang a reconcile
_EVENT_MESSAGE_LIMIT = 1024
WRITE_VERBS = frozenset({"CREATE", "APPLY", "PATCH", "UPDATE", "DELETE"})


class KubeError(Exception):
    """A request the API server refused; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ApplyOutcome:
    written: int
    skipped: int


def manifest_hash(manifest: Manifest) -> str:
    """A stable hash of a manifest, ignoring the hash annotation itself."""
    body = json.loads(json.dumps(manifest))
    annotations = body.get("metadata", {}).get("annotations", {})
    annotations.pop(APPLIED_HASH_ANNOTATION, None)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def with_list_map_keys(manifest: Manifest) -> Manifest:
    """``manifest`` with ``protocol: TCP`` on every port that leaves it out.

    ``protocol`` is part of the key of Service and container port lists; API servers before
    1.22 refuse a server-side apply whose port omits it ("associative list with keys has an
    element that omits key field"), although TCP is its default everywhere.
    """
    spec = manifest.get("spec") or {}
    port_lists = [spec.get("ports") or []]
    pod = (spec.get("template") or {}).get("spec") or {}
    for container in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
        port_lists.append(container.get("ports") or [])
    for ports in port_lists:
        for port in ports:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
    return manifest


def status_merge_patch(live: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``live`` into ``desired``; {} if equal."""
    patch: dict[str, Any] = {}
    for key in live:
        if key not in desired:
            patch[key] = None
    for key, value in desired.items():
        old = live.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            sub = status_merge_patch(old, value)
            if sub:
                patch[key] = sub
        elif key not in live or old != value:
            patch[key] = value
    return patch


class _Connection:
    """The shared part: one ApiClient (thread-safe urllib3 pool) and what discovery found.

    ``grant`` is what the generated RBAC allows: every request is checked against it before it
    is sent. ``write_fence`` (leader election) says whether this process may write now.
    """

    def __init__(
        self,
        api_client: Any,
        grant: permissions.Grant,
        write_fence: Callable[[], bool] | None = None,
    ) -> None:
        self.api_client = api_client
        self.grant = grant
        self.write_fence = write_fence
        self._lock = threading.Lock()
        self._pdb_version: str | None = None

    def pdb_api_version(self, kube: Kube) -> str:
        # policy/v1 arrived in 1.21; a 1.20 server only has policy/v1beta1.
        with self._lock:
            if self._pdb_version is None:
                group = kube.request("GET", "GET", "/apis/policy")
                versions = {v.get("version") for v in group.get("versions", [])}
                self._pdb_version = "policy/v1" if "v1" in versions else "policy/v1beta1"
            return self._pdb_version


class Kube:
    """API calls for one unit of work, counted per verb in ``counts``.

    ``counted()`` gives a new view that shares the connection but starts a fresh counter, so
    concurrent reconciles of different CacheClusters each report their own requests.
    """

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.counts: Counter[str] = Counter()

    @classmethod
    def connect(
        cls,
        kubeconfig: str | None = None,
        *,
        grant: permissions.Grant | None = None,
        user_agent: str | None = None,
    ) -> Kube:
        # Typed as Any: the client's config loaders carry no annotations.
        client: Any = importlib.import_module("kubernetes.client")
        config: Any = importlib.import_module("kubernetes.config")
        configuration = client.Configuration()
        if kubeconfig is None:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        api_client = client.ApiClient(configuration)
        if user_agent is not None:
            # Names this process in the API server's audit log: tests count writes per replica.
            api_client.user_agent = user_agent
        return cls(_Connection(api_client, grant or permissions.Grant()))

    def counted(self) -> Kube:
        return Kube(self._connection)

    @property
    def writes(self) -> int:
        return sum(n for verb, n in self.counts.items() if verb in WRITE_VERBS)

    @property
    def requests(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        self._connection.api_client.close()

    def set_write_fence(self, fence: Callable[[], bool] | None) -> None:
        """Writes (except the Lease's own) are refused while ``fence()`` is false."""
        self._connection.write_fence = fence

    # -- plumbing -------------------------------------------------------------------------------

    def request(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        fenced: bool = True,
    ) -> dict[str, Any]:
        """One HTTP request, counted under ``verb``; the decoded JSON answer.

        Refused before it is sent when the generated RBAC would not allow it, or when it is a
        write and this process is not the leader (``fenced=False``: the Lease itself).
        """
        connection = self._connection
        api = connection.api_client
        try:
            permissions.check(method, path, query, connection.grant)
        except permissions.UndeclaredAccess as error:
            raise KubeError(0, "UndeclaredAccess", str(error)) from None
        fence = connection.write_fence
        if fenced and verb in WRITE_VERBS and fence is not None and not fence():
            raise KubeError(0, "NotLeader", f"{method} {path}: this replica is not the leader")
        if query:
            path = f"{path}?{urlencode(query)}"
        headers = {"Accept": "application/json", "Content-Type": content_type}
        serialized = api.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        self.counts[verb] += 1
        try:
            response = api.call_api(*serialized, _request_timeout=_TIMEOUT)
        except Exception as error:  # urllib3: refused, reset, timed out
            raise KubeError(0, type(error).__name__, str(error)) from error
        data = response.read()
        decoded: Any = json.loads(data) if data else {}
        if not 200 <= response.status <= 299:
            message = decoded.get("message", "") if isinstance(decoded, dict) else str(decoded)
            raise KubeError(response.status, response.reason or "", message)
        return decoded if isinstance(decoded, dict) else {}

    def _path(self, api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
        try:
            plural = _PLURALS[kind]
        except KeyError:
            raise KubeError(0, "UnknownKind", f"the operator does not manage {kind}") from None
        root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        path = f"{root}/namespaces/{quote(namespace)}/{plural}"
        return f"{path}/{quote(name)}" if name is not None else path

    def _served_version(self, api_version: str, kind: str) -> str:
        if kind == "PodDisruptionBudget":
            return self._connection.pdb_api_version(self)
        return api_version

    # -- the CacheCluster -------------------------------------------------------------------------

    def get_cluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.request(
                "GET", "GET", self._path(f"{GROUP}/{VERSION}", "CacheCluster", namespace, name)
            )
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def patch_status(
        self, cluster: dict[str, Any], desired: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Write ``desired`` as the whole status, only if it differs from the live one.

        The patch carries the resourceVersion the status was computed from, so a status written
        meanwhile (another operator instance) makes this fail with 409 instead of stepping back.
        """
        patch = status_merge_patch(cluster.get("status") or {}, desired)
        if not patch:
            return None
        meta = cluster["metadata"]
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}
        path = self._path(f"{GROUP}/{VERSION}", "CacheCluster", meta["namespace"], meta["name"])
        return self.request(
            "PATCH",
            "PATCH",
            f"{path}/status",
            body=body,
            content_type="application/merge-patch+json",
        )

    def post_event(self, cluster: dict[str, Any], event: EventSpec) -> None:
        meta = cluster["metadata"]
        involved = {
            "apiVersion": cluster.get("apiVersion", f"{GROUP}/{VERSION}"),
            "kind": cluster.get("kind", "CacheCluster"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        self.post_event_about(meta["namespace"], involved, event, name_prefix=meta["name"])

    def post_event_about(
        self,
        namespace: str,
        involved: dict[str, Any],
        event: EventSpec,
        *,
        name_prefix: str,
        fenced: bool = True,
    ) -> None:
        """An Event on any object (``involved`` is its objectReference)."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = event.message
        if len(message) > _EVENT_MESSAGE_LIMIT:
            message = message[: _EVENT_MESSAGE_LIMIT - 1] + "…"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name_prefix}.", "namespace": namespace},
            "involvedObject": {k: v for k, v in involved.items() if v is not None},
            "type": event.type,
            "reason": event.reason,
            "message": message,
            "source": {"component": FIELD_MANAGER, "host": socket.gethostname()},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.request(
            "CREATE", "POST", self._path("v1", "Event", namespace), body=body, fenced=fenced
        )

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._get("v1", "Secret", namespace, name)
        return found

    # -- the operator's own objects ----------------------------------------------------------------

    def server_version(self) -> tuple[int, int]:
        """(major, minor) of the API server, e.g. (1, 29); "29+" minors count as 29."""
        info = self.request("GET", "GET", "/version")
        digits = re.compile(r"^\d+")

        def number(text: Any) -> int:
            found = digits.match(str(text))
            return int(found.group()) if found else 0

        return number(info.get("major")), number(info.get("minor"))

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._get("coordination.k8s.io/v1", "Lease", namespace, name)
        return found

    def write_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        """Create the Lease (no resourceVersion) or replace it (409 if someone wrote it)."""
        name = lease["metadata"]["name"]
        if lease["metadata"].get("resourceVersion"):
            path = self._path("coordination.k8s.io/v1", "Lease", namespace, name)
            return self.request("UPDATE", "PUT", path, body=lease, fenced=False)
        path = self._path("coordination.k8s.io/v1", "Lease", namespace)
        return self.request("CREATE", "POST", path, body=lease, fenced=False)

    def write_secret(self, namespace: str, secret: dict[str, Any]) -> dict[str, Any]:
        """Create the Secret, or replace it when it carries the resourceVersion it replaces."""
        name = secret["metadata"]["name"]
        if secret["metadata"].get("resourceVersion"):
            path = self._path("v1", "Secret", namespace, name)
            return self.request("UPDATE", "PUT", path, body=secret)
        return self.request("CREATE", "POST", self._path("v1", "Secret", namespace), body=secret)

    def get_webhook_configuration(self, name: str) -> dict[str, Any] | None:
        path = f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{quote(name)}"
        try:
            return self.request("GET", "GET", path)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def patch_webhook_configuration(self, name: str, patch: list[dict[str, Any]]) -> None:
        """A JSON patch (with ``test`` operations guarding what it replaces)."""
        path = f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{quote(name)}"
        self.request(
            "PATCH",
            "PATCH",
            path,
            query={"fieldManager": FIELD_MANAGER},
            body=patch,
            content_type="application/json-patch+json",
        )

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        listing = self.request(
            "LIST", "GET", self._path("v1", "Pod", namespace), query={"labelSelector": selector}
        )
        items: list[dict[str, Any]] = listing.get("items", [])
        return items

    def _get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        try:
            return self.request("GET", "GET", self._path(api_version, kind, namespace, name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    # -- children ---------------------------------------------------------------------------------

    def list_children(self, namespace: str, cluster_name: str) -> dict[tuple[str, str], Manifest]:
        """The cluster's live children of every kind the operator makes, by (kind, name)."""
        children: dict[tuple[str, str], Manifest] = {}
        selector = {"labelSelector": f"{CLUSTER_LABEL}={cluster_name}"}
        for api_version, kind in _CHILD_KINDS:
            served = self._served_version(api_version, kind)
            listing = self.request(
                "LIST", "GET", self._path(served, kind, namespace), query=selector
            )
            for item in listing.get("items", []):
                item.setdefault("apiVersion", served)
                item.setdefault("kind", kind)
                children[(kind, item["metadata"]["name"])] = item
        return children

    def apply(self, manifest: Manifest, live: Manifest | None) -> bool:
        """Server-side apply ``manifest``; skipped (False) when the live object is already it."""
        manifest = json.loads(json.dumps(manifest))
        annotations = manifest.setdefault("metadata", {}).setdefault("annotations", {})
        if APPLIED_HASH_ANNOTATION not in annotations:
            annotations[APPLIED_HASH_ANNOTATION] = manifest_hash(manifest)
        if live is not None:
            live_annotations = live.get("metadata", {}).get("annotations") or {}
            if (
                live_annotations.get(APPLIED_HASH_ANNOTATION)
                == annotations[APPLIED_HASH_ANNOTATION]
            ):
                return False
        kind = manifest["kind"]
        manifest["apiVersion"] = self._served_version(manifest["apiVersion"], kind)
        with_list_map_keys(manifest)
        meta = manifest["metadata"]
        self.request(
            "APPLY",
            "PATCH",
            self._path(manifest["apiVersion"], kind, meta["namespace"], meta["name"]),
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=manifest,
            content_type="application/apply-patch+yaml",
        )
        return True

    def create_if_absent(self, manifest: Manifest, live: Manifest | None) -> bool:
        if live is not None:
            return False
        manifest = json.loads(json.dumps(manifest))
        kind = manifest["kind"]
        manifest["apiVersion"] = self._served_version(manifest["apiVersion"], kind)
        meta = manifest["metadata"]
        try:
            self.request(
                "CREATE",
                "POST",
                self._path(manifest["apiVersion"], kind, meta["namespace"]),
                query={"fieldManager": FIELD_MANAGER},
                body=manifest,
            )
        except KubeError as error:
            if error.status == 409:  # created meanwhile: exactly what "if absent" allows
                return False
            raise
        return True

    def delete(self, ref: ChildRef, namespace: str) -> bool:
        """Delete one child (its pods go by garbage collection); False if it was already gone."""
        try:
            self.request(
                "DELETE",
                "DELETE",
                self._path(
                    self._served_version(ref.api_version, ref.kind), ref.kind, namespace, ref.name
                ),
                body={"propagationPolicy": "Background"},
            )
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True
