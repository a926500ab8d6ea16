"""permissions.py and rbac.py: requests as RBAC sees them, and the manifests made from RULES."""

from __future__ import annotations

import pytest
from cachefleet_operator.permissions import (
    RULES,
    Access,
    Grant,
    UndeclaredAccess,
    check,
    declared,
    required,
)
from cachefleet_operator.rbac import manifests, policy_rules

HOOKS = "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
GRANT = Grant(own_namespace="cachefleet-system", watched=frozenset({"apps"}))


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/apis/cachefleet.io/v1alpha1/namespaces/apps/cacheclusters/c", None,
         Access("cachefleet.io", "cacheclusters", "get", "apps", "c")),
        ("PATCH", "/apis/cachefleet.io/v1alpha1/namespaces/apps/cacheclusters/c/status", None,
         Access("cachefleet.io", "cacheclusters/status", "patch", "apps", "c")),
        ("GET", "/apis/apps/v1/namespaces/apps/statefulsets", {"labelSelector": "x"},
         Access("apps", "statefulsets", "list", "apps", None)),
        ("GET", "/api/v1/namespaces/apps/pods", {"watch": "true"},
         Access("", "pods", "watch", "apps", None)),
        ("POST", "/api/v1/namespaces/apps/events", None,
         Access("", "events", "create", "apps", None)),
        ("PUT", "/apis/coordination.k8s.io/v1/namespaces/sys/leases/l", None,
         Access("coordination.k8s.io", "leases", "update", "sys", "l")),
        ("PATCH", f"/apis/{HOOKS}/w", None, Access(*HOOKS.split("/v1/"), "patch", None, "w")),
        ("GET", "/apis/policy", None, None),
        ("GET", "/version", None, None),
    ],
)  # fmt: skip
def test_requests_map_to_what_rbac_checks(
    method: str, path: str, query: dict[str, str] | None, expected: Access | None
) -> None:
    assert required(method, path, query) == expected


def test_what_the_operator_does_is_declared_and_nothing_more() -> None:
    allowed = [
        ("GET", "/apis/cachefleet.io/v1alpha1/namespaces/apps/cacheclusters/c"),
        ("PATCH", "/apis/apps/v1/namespaces/apps/statefulsets/c-shard-0"),
        ("DELETE", "/api/v1/namespaces/apps/services/c-shard-3"),
        (
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/cachefleet-system/leases/cachefleet-operator",
        ),
        ("PUT", "/api/v1/namespaces/cachefleet-system/secrets/cachefleet-webhook-tls"),
        (
            "PATCH",
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/cachefleet-sidecar-injector",
        ),
    ]
    for method, path in allowed:
        check(method, path, None, GRANT)
    refused = [
        ("DELETE", "/api/v1/namespaces/apps/secrets/c-auth"),  # the password is never deleted
        ("DELETE", "/api/v1/namespaces/apps/pods/p"),
        ("GET", "/apis/apps/v1/namespaces/elsewhere/statefulsets"),  # not watched
        ("PUT", "/apis/coordination.k8s.io/v1/namespaces/cachefleet-system/leases/other"),
        ("PUT", "/api/v1/namespaces/apps/secrets/cachefleet-webhook-tls"),  # not its namespace
        ("PATCH", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/istio"),
        ("GET", "/api/v1/pods"),  # cluster-wide: only with --all-namespaces
    ]
    for method, path in refused:
        with pytest.raises(UndeclaredAccess):
            check(method, path, None, GRANT)
    everywhere = Grant(own_namespace="cachefleet-system", watched=None)
    check("GET", "/api/v1/pods", None, everywhere)
    check("GET", "/apis/apps/v1/namespaces/elsewhere/statefulsets", None, everywhere)


def test_renamed_objects_are_checked_by_their_configured_names() -> None:
    grant = Grant(
        own_namespace="ops", watched=frozenset(), names=(("cachefleet-operator", "mine"),)
    )
    lease = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/"
    update = ("coordination.k8s.io", "leases", "update", "ops")
    mine, default = Access(*update, "mine"), Access(*update, "cachefleet-operator")
    assert required("PUT", lease + "mine") == mine
    assert required("PUT", lease + "cachefleet-operator") == default
    assert declared(mine, grant)
    assert not declared(default, grant)
    # Refused for the rename alone: without it, the default name is the one granted.
    assert declared(default, Grant(own_namespace="ops", watched=frozenset()))


def test_rules_have_no_wildcards_and_say_why() -> None:
    for rule in RULES:
        assert "*" not in (rule.group, *rule.resources, *rule.verbs)
        assert rule.why


def test_manifests_per_namespace_or_cluster_wide() -> None:
    namespaced = manifests(service_account="op", operator_namespace="sys", watched=["a", "b"])
    kinds = [(m["kind"], m["metadata"].get("namespace")) for m in namespaced]
    assert kinds == [
        ("Role", "a"), ("RoleBinding", "a"), ("Role", "b"), ("RoleBinding", "b"),
        ("Role", "sys"), ("RoleBinding", "sys"),
        ("ClusterRole", None), ("ClusterRoleBinding", None),
    ]  # fmt: skip
    assert namespaced[0]["rules"] == policy_rules("watched")
    wide = manifests(service_account="op", operator_namespace="sys", watched=None)
    assert [m["kind"] for m in wide][:2] == ["ClusterRole", "ClusterRoleBinding"]
    for binding in (m for m in namespaced + wide if m["kind"].endswith("Binding")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "op", "namespace": "sys"}]
