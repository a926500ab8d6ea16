"""AdmissionReview in, AdmissionReview out: pure, around ``injection``.

``answer`` never refuses a pod: a pod whose sidecar cannot be injected is admitted as it is,
with a Warning Event on it (or on its owner) saying why. Refusing would turn a missing
CacheCluster into an outage of the app; the webhook configuration's ``failurePolicy`` is for
when the webhook cannot be reached at all.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cachefleet_operator.injection import (
    Outcome,
    SidecarFacts,
    injection_patch,
    requested_cluster,
)
from cachefleet_operator.plan import EventSpec

ADMISSION_API = "admission.k8s.io/v1"
MISSING_REASON = "SidecarNotInjected"


@dataclass(frozen=True)
class Answer:
    review: dict[str, Any]
    # A Warning Event to post, about ``involved`` in ``namespace`` (None: nothing to say).
    event: EventSpec | None = None
    involved: dict[str, Any] | None = None
    namespace: str = ""
    outcome: str = ""


@dataclass(frozen=True)
class PodUnderReview:
    """The pod an AdmissionReview is about, read once per request."""

    pod: dict[str, Any]
    namespace: str
    outcome: Outcome
    cluster: str | None  # the CacheCluster its label names

    @property
    def wanted_cluster(self) -> str | None:
        """The CacheCluster whose sidecar the pod should get; None: no sidecar to inject."""
        return self.cluster if self.outcome == "injected" else None


def pod_under_review(review: dict[str, Any]) -> PodUnderReview:
    """The pod under review, its namespace and whether (and of which CacheCluster) it asks for
    a sidecar."""
    request = review.get("request") or {}
    pod = request.get("object") or {}
    namespace = str(request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or "")
    outcome, cluster = requested_cluster(pod)
    return PodUnderReview(pod, namespace, outcome, cluster)


def answer(
    review: dict[str, Any],
    facts: SidecarFacts | None,
    *,
    watched: bool = True,
    subject: PodUnderReview | None = None,
) -> Answer:
    """The response to ``review``; ``facts`` of the CacheCluster the pod names, if it exists.
    ``subject``: the review's pod as the caller read it already (``pod_under_review``)."""
    request = review.get("request") or {}
    subject = subject or pod_under_review(review)
    pod, namespace, cluster = subject.pod, subject.namespace, subject.cluster
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
    result = Answer(_review(response), outcome=subject.outcome)
    if subject.outcome != "injected" or request.get("operation", "CREATE") != "CREATE":
        return result
    if not watched or facts is None:
        why = (
            f"CacheCluster {cluster!r} is not watched by this operator in namespace {namespace}"
            if not watched
            else f"CacheCluster {cluster!r} does not exist in namespace {namespace} (or has "
            "never had a valid spec)"
        )
        message = f"pod started without the cachefleet sidecar: {why}"
        response["warnings"] = [message]
        event = None if request.get("dryRun") else EventSpec("Warning", MISSING_REASON, message)
        return Answer(
            _review(response), event, involved_object(pod, namespace), namespace, "no-cluster"
        )
    patch = injection_patch(pod, facts)
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return Answer(_review(response), outcome=subject.outcome)


def _review(response: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": ADMISSION_API, "kind": "AdmissionReview", "response": response}


def involved_object(pod: dict[str, Any], namespace: str) -> dict[str, Any]:
    """What an Event about a pod being created refers to: its owner (a ReplicaSet, a Job...)
    when it has one, since a generated pod has no name yet; else the pod by name."""
    meta = pod.get("metadata") or {}
    owners = meta.get("ownerReferences") or []
    controller = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if controller is not None:
        return {
            "apiVersion": controller.get("apiVersion"),
            "kind": controller.get("kind"),
            "name": controller.get("name"),
            "uid": controller.get("uid"),
            "namespace": namespace,
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": meta.get("name") or meta.get("generateName") or "",
        "namespace": namespace,
    }
