"""A real Kubernetes API and the operator as a process, for the e2e tests and bench/operator.py.

With ``$KUBECONFIG`` set (a kind cluster from kind-config.yaml) that cluster is used as it is.
Otherwise the control plane is built once per machine from Debian's packages
(tests/e2e/kube/build-control-plane.sh, cached outside the repository) and started in a
temporary directory for the session: etcd, kube-apiserver and kube-controller-manager, no
kubelet, so StatefulSet pods stay Pending and nothing here waits for Redis to run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.support.processes import log_tail, spawn, stop

ROOT = Path(__file__).resolve().parents[2]
KUBE_SCRIPTS = ROOT / "tests" / "e2e" / "kube"
CRD_DIR = ROOT / "crds"
CACHEFLEET = ROOT / ".venv" / "bin" / "cachefleet"
KUBECTL = os.environ.get("KUBECTL", "kubectl")
BUILD_TIMEOUT = 1800.0  # the first build compiles kube-apiserver: minutes on 2 cores

T = TypeVar("T")


class HarnessError(RuntimeError):
    pass


def wait_for(probe: Callable[[], T | None], what: str, timeout: float, interval: float = 0.25) -> T:
    """Poll ``probe`` until it returns something other than None/False; fail saying ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def control_plane() -> Iterator[Path]:
    """Yield a kubeconfig path: $KUBECONFIG's, or a fresh local control plane's."""
    given = os.environ.get("KUBECONFIG")
    if given:
        yield Path(given)
        return
    build = subprocess.run(
        [str(KUBE_SCRIPTS / "build-control-plane.sh")],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    if build.returncode != 0:
        raise HarnessError(
            "building the local control plane failed (set KUBECONFIG to use a kind cluster "
            f"instead):\n{build.stdout[-2000:]}{build.stderr[-2000:]}"
        )
    directory = Path(tempfile.mkdtemp(prefix="cachefleet-e2e-kube-"))
    try:
        started = subprocess.run(
            [str(KUBE_SCRIPTS / "start-control-plane.sh"), str(directory)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if started.returncode != 0:
            raise HarnessError(f"starting the control plane failed:\n{started.stderr[-3000:]}")
        yield directory / "kubeconfig"
    finally:
        subprocess.run(
            [str(KUBE_SCRIPTS / "stop-control-plane.sh"), str(directory)],
            capture_output=True,
            timeout=120,
        )


@dataclass(frozen=True)
class Kubectl:
    kubeconfig: Path
    namespace: str = "default"

    def run(
        self, *args: str, input: str | None = None, check: bool = True, namespaced: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [KUBECTL, "--kubeconfig", str(self.kubeconfig)]
        if namespaced:
            argv += ["--namespace", self.namespace]
        result = subprocess.run(
            [*argv, *args], input=input, capture_output=True, text=True, timeout=60
        )
        if check and result.returncode != 0:
            raise HarnessError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.run("get", kind, name, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise HarnessError(f"kubectl get {kind} {name}: {result.stderr.strip()}")
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def patch(self, kind: str, name: str, patch: Any, patch_type: str = "merge") -> None:
        self.run("patch", kind, name, f"--type={patch_type}", "-p", json.dumps(patch))

    def apply(self, manifest: dict[str, Any] | str) -> subprocess.CompletedProcess[str]:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self.run("apply", "-f", "-", input=text)


def install_crd(kubectl: Kubectl) -> None:
    """Apply crds/ and wait until the API server serves the CacheCluster resource."""
    kubectl.run("apply", "-f", str(CRD_DIR), namespaced=False)
    wait_for_crd(kubectl)


def wait_for_crd(kubectl: Kubectl) -> None:
    kubectl.run(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/cacheclusters.cachefleet.io",
        namespaced=False,
    )


def create_namespace(
    kubectl: Kubectl, prefix: str = "cachefleet-e2e", existing: str | None = None
) -> str:
    """A fresh namespace (or ``existing``), once its default ServiceAccount exists."""
    name = existing or f"{prefix}-{uuid.uuid4().hex[:6]}"
    if existing is None:
        kubectl.run("create", "namespace", name, namespaced=False)
    # Pods need the namespace's default ServiceAccount, which the controller-manager adds.
    wait_for(
        lambda: (
            kubectl.run(
                "get", "serviceaccount", "default", "-n", name, check=False, namespaced=False
            ).returncode
            == 0
        ),
        f"ServiceAccount default in {name}",
        timeout=60,
    )
    return name


@dataclass
class Operator:
    """``cachefleet operator`` as a child process, killable and restartable."""

    kubeconfig: Path
    namespace: str
    signal_file: Path
    log: Path
    resync_seconds: float = 2.0
    # Its name in the Lease and in the API server's audit log (through its user agent).
    identity: str = "operator-a"
    operator_namespace: str | None = None
    webhook_port: int = 0
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def argv(self) -> list[str]:
        webhook = ["--webhook-port", str(self.webhook_port)]
        if self.webhook_port:
            webhook += ["--webhook-host", "127.0.0.1"]
        return [
            str(CACHEFLEET),
            "operator",
            "--kubeconfig",
            str(self.kubeconfig),
            "--namespace",
            self.namespace,
            "--operator-namespace",
            self.operator_namespace or self.namespace,
            "--identity",
            self.identity,
            "--warmup-signal",
            f"file:{self.signal_file}",
            "--resync-seconds",
            str(self.resync_seconds),
            *webhook,
            *self.extra_args,
        ]

    @property
    def user_agent(self) -> str:
        return f"({self.identity})"

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise HarnessError("operator already running")
        self.process = spawn(self.argv(), self.log)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, grace=10.0)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self) -> str:
        return log_tail(self.log)

    def set_hit_ratio(self, hit_ratio: float | None, cluster: str | None = None) -> None:
        """Feed the warm-up signal: for every cluster, or one ``cluster`` in our namespace."""
        current: dict[str, Any] = {}
        if self.signal_file.exists():
            current = json.loads(self.signal_file.read_text())
        if cluster is None:
            current["hitRatio"] = hit_ratio
        else:
            current.setdefault("clusters", {})[f"{self.namespace}/{cluster}"] = {
                "hitRatio": hit_ratio
            }
        temporary = self.signal_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(current))
        # Atomic replace: the operator never reads half a file.
        temporary.replace(self.signal_file)


@contextlib.contextmanager
def running_operator(
    kubeconfig: Path, namespace: str, directory: Path, **options: Any
) -> Iterator[Operator]:
    operator = Operator(
        kubeconfig=kubeconfig,
        namespace=namespace,
        signal_file=directory / "signal.json",
        log=directory / "operator.log",
        **options,
    )
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


# -- the API server's audit log: who wrote what ----------------------------------------------


@dataclass(frozen=True)
class AuditedWrite:
    verb: str
    user: str
    user_agent: str
    resource: str
    namespace: str
    name: str
    code: int
    at: float  # seconds since the epoch, when the API server answered


class AuditLog:
    """The write requests the local API server logged (start-control-plane.sh's audit policy)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def writes(self, since: int = 0) -> list[AuditedWrite]:
        found = []
        with open(self.path, "rb") as handle:
            handle.seek(since)
            for line in handle:
                event = json.loads(line)
                if event.get("stage") != "ResponseComplete":
                    continue
                ref = event.get("objectRef") or {}
                resource = ref.get("resource", "")
                if ref.get("subresource"):
                    resource += "/" + ref["subresource"]
                stamp = event.get("stageTimestamp", "")
                found.append(
                    AuditedWrite(
                        verb=event.get("verb", ""),
                        user=(event.get("user") or {}).get("username", ""),
                        user_agent=event.get("userAgent", ""),
                        resource=resource,
                        namespace=ref.get("namespace", ""),
                        name=ref.get("name", ""),
                        code=(event.get("responseStatus") or {}).get("code", 0),
                        at=_epoch(stamp),
                    )
                )
        return found

    def by(self, operator: Operator, since: int = 0) -> list[AuditedWrite]:
        """Write requests ``operator`` (by its user agent) made since ``since``."""
        return [w for w in self.writes(since) if operator.user_agent in w.user_agent]


def _epoch(stamp: str) -> float:
    from datetime import datetime

    if not stamp:
        return 0.0
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def audit_log(kubeconfig: Path) -> AuditLog | None:
    """The local control plane's audit log; None for a cluster from $KUBECONFIG."""
    path = kubeconfig.parent / "audit.log"
    return AuditLog(path) if path.exists() else None


# -- the Helm chart, installed as rendered ---------------------------------------------------


def install_chart(
    kubectl: Kubectl, release_namespace: str, values: dict[str, Any]
) -> list[dict[str, Any]]:
    """Render charts/cachefleet (helm-python-sdk) and apply it, as `helm install` would."""
    from tests.chart.chart import manifests

    rendered = manifests(values, release="cachefleet", namespace=release_namespace)
    kubectl.run("create", "namespace", release_namespace, check=False, namespaced=False)
    crds = [m for m in rendered if m["kind"] == "CustomResourceDefinition"]
    rest = [m for m in rendered if m["kind"] != "CustomResourceDefinition"]
    for batch in (crds, rest):
        text = "".join("---\n" + json.dumps(m) + "\n" for m in batch)
        kubectl.run(
            "apply",
            "--server-side",
            "--field-manager=helm",
            "-f",
            "-",
            input=text,
            namespaced=False,
        )
    wait_for_crd(kubectl)
    return rendered


def service_account_kubeconfig(
    admin: Kubectl, namespace: str, account: str, destination: Path
) -> Path:
    """A kubeconfig that authenticates as ``account``: the operator runs with exactly its RBAC."""
    token = admin.run(
        "create", "token", account, "-n", namespace, "--duration=4h", namespaced=False
    ).stdout.strip()
    config = yaml.safe_load(admin.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    for context in config["contexts"]:
        context["context"]["namespace"] = namespace
    destination.write_text(yaml.safe_dump(config))
    destination.chmod(0o600)
    return destination
