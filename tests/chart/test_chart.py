"""charts/cachefleet: lint, render, schemas, least-privilege RBAC, security contexts."""

from __future__ import annotations

import json
from typing import Any

import helm_python
import pytest
import yaml
from cachefleet_operator.crd import crd_yaml
from cachefleet_operator.rbac import CHART_RULES_PATH, chart_rules_yaml, policy_rules

from tests.chart.chart import CHART, EXAMPLE_VALUES, ROOT, example, manifests, render
from tests.support.kube_schemas import FOREIGN_KINDS, problems
from tests.support.pod_security import assert_restricted_pod

VALUE_SETS = [pytest.param({}, id="defaults")] + [
    pytest.param(example(path), id=path.stem) for path in EXAMPLE_VALUES
]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_the_chart_lints_clean(values: dict[str, Any]) -> None:
    report = helm_python.lint(CHART, values, strict=True)
    assert report["errors"] == [], report
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == [], serious


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_rendered_object_validates_against_the_oldest_and_newest_kubernetes(
    values: dict[str, Any],
) -> None:
    found = manifests(values)
    kinds = {(m["apiVersion"], m["kind"]) for m in found}
    assert ("apps/v1", "Deployment") in kinds
    assert ("apiextensions.k8s.io/v1", "CustomResourceDefinition") in kinds
    errors = [
        p for m in found if (m["apiVersion"], m["kind"]) not in FOREIGN_KINDS for p in problems(m)
    ]
    assert errors == [], "\n".join(errors)


def test_bad_values_fail_with_a_message_naming_the_value() -> None:
    with helm_python.Chart.load(CHART) as chart:
        for values, expected in [
            ({"webhook": {"failurePolicy": "Sometimes"}}, "/webhook/failurePolicy"),
            ({"replicas": 0}, "/replicas"),
            ({"watch": {"namespaces": ["Not_A_Namespace"]}}, "/watch/namespaces/0"),
            ({"replica": 3}, "'replica' not allowed"),
            ({"webhook": {"url": "http://plain"}}, "/webhook/url"),
        ]:
            with pytest.raises(helm_python.HelmValuesError, match=expected):
                chart.validate_schema(values)


def test_the_charts_crd_and_rbac_rules_are_generated_from_the_code() -> None:
    # Regenerate: cachefleet crd > charts/cachefleet/files/crd.yaml
    assert (CHART / "files" / "crd.yaml").read_text() == crd_yaml()
    # Regenerate: cachefleet rbac --chart-rules > charts/cachefleet/files/rbac-rules.yaml
    assert (ROOT / CHART_RULES_PATH).read_text() == chart_rules_yaml()


def _rbac(found: list[dict[str, Any]]) -> dict[tuple[str, str | None], dict[str, Any]]:
    kinds = {"Role", "ClusterRole"}
    return {(m["kind"], m["metadata"].get("namespace")): m for m in found if m["kind"] in kinds}


def test_rbac_is_a_role_per_watched_namespace_and_no_wildcard() -> None:
    found = manifests({"watch": {"namespaces": ["team-a", "team-b"]}})
    roles = _rbac(found)
    assert set(roles) == {
        ("Role", "team-a"),
        ("Role", "team-b"),
        ("Role", "cachefleet-system"),  # the Lease and the certificate Secret
        ("ClusterRole", None),  # the webhook configuration's caBundle, by name only
    }
    assert roles[("Role", "team-a")]["rules"] == policy_rules("watched")
    assert roles[("Role", "cachefleet-system")]["rules"] == policy_rules("own")
    cluster = roles[("ClusterRole", None)]["rules"]
    assert cluster == policy_rules("cluster")
    assert all(rule.get("resourceNames") for rule in cluster)
    for role in roles.values():
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (role["metadata"]["name"], rule)
    bindings = [m for m in found if m["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert len(bindings) == len(roles)
    assert {s["name"] for b in bindings for s in b["subjects"]} == {"cachefleet"}
    assert not any(
        m["kind"] == "ClusterRoleBinding" and "admin" in m["roleRef"]["name"] for m in found
    )


def test_rbac_is_cluster_wide_only_for_all_namespaces() -> None:
    found = manifests({"watch": {"allNamespaces": True}})
    cluster_roles = {m["metadata"]["name"]: m for m in found if m["kind"] == "ClusterRole"}
    assert set(cluster_roles) == {"cachefleet-watched", "cachefleet-webhook"}
    assert cluster_roles["cachefleet-watched"]["rules"] == policy_rules("watched")
    roles = [
        (m["metadata"]["namespace"], m["metadata"]["name"]) for m in found if m["kind"] == "Role"
    ]
    assert roles == [("cachefleet-system", "cachefleet-own")]
    default = [m["metadata"]["name"] for m in manifests({}) if m["kind"] == "ClusterRole"]
    assert default == ["cachefleet-webhook"]


def test_the_operator_deployment_runs_restricted_with_two_replicas() -> None:
    [deployment] = [m for m in manifests({}) if m["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert_restricted_pod(pod)
    for container in pod["containers"]:
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["requests"]["memory"]
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts  # where the webhook's certificate files are written
    args = pod["containers"][0]["args"]
    assert "--namespace=cachefleet-system" in args
    assert "--webhook-certs=operator" in args


def test_the_webhook_never_matches_the_fleets_own_pods_and_defaults_to_ignore() -> None:
    [config] = [m for m in manifests({}) if m["kind"] == "MutatingWebhookConfiguration"]
    [hook] = config["webhooks"]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["sideEffects"] == "NoneOnDryRun"
    assert "caBundle" not in hook["clientConfig"]  # the operator's to keep current
    expressions = {(e["key"], e["operator"]) for e in hook["objectSelector"]["matchExpressions"]}
    assert expressions == {
        ("cachefleet.io/cluster", "Exists"),
        ("cachefleet.io/role", "DoesNotExist"),
    }
    service = hook["clientConfig"]["service"]
    assert service["name"] == "cachefleet-webhook" and service["path"] == "/mutate-pods"


def test_cert_manager_mode_asks_cert_manager_for_the_certificate_and_ca_bundle() -> None:
    found = manifests(example(CHART / "examples" / "cert-manager.yaml"))
    [certificate] = [m for m in found if m["kind"] == "Certificate"]
    assert certificate["spec"]["secretName"] == "cachefleet-webhook-tls"
    assert certificate["spec"]["issuerRef"] == {"name": "cluster-ca", "kind": "ClusterIssuer"}
    [config] = [m for m in found if m["kind"] == "MutatingWebhookConfiguration"]
    annotation = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert annotation == "cachefleet-system/cachefleet-webhook"
    # The operator does not patch the configuration then: no cluster-scoped rule at all.
    assert not any(m["kind"] == "ClusterRole" for m in found)


def test_the_crd_is_kept_on_uninstall_and_upgraded_with_the_chart() -> None:
    [crd] = [m for m in manifests({}) if m["kind"] == "CustomResourceDefinition"]
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    generated = yaml.safe_load(crd_yaml())
    assert crd["spec"] == generated["spec"]
    assert not (CHART / "crds").exists()  # Helm would never upgrade it there
    assert not any(
        m["kind"] == "CustomResourceDefinition" for m in manifests({"crds": {"install": False}})
    )


def test_notes_carry_the_argo_cd_health_check() -> None:
    notes = render({})["cachefleet/templates/NOTES.txt"]
    lua = (CHART / "files" / "argocd-health.lua").read_text()
    body = [line.strip() for line in lua.splitlines() if line.strip()]
    assert all(line in notes for line in body)


def test_every_value_is_documented_in_the_charts_readme() -> None:
    readme = (CHART / "README.md").read_text()
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def leaves(node: Any, prefix: str = "") -> list[str]:
        if isinstance(node, dict) and node:
            return [
                leaf for key, value in node.items() for leaf in leaves(value, f"{prefix}{key}.")
            ]
        return [prefix.rstrip(".")]

    missing = [key for key in leaves(defaults) if f"`{key}`" not in readme]
    assert missing == [], missing


def test_the_schema_describes_every_value_and_each_example_passes_it() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    # A misspelt top-level value is refused, and none of the chart's own goes unchecked.
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(defaults)
    assert len(EXAMPLE_VALUES) >= 3
    with helm_python.Chart.load(CHART) as chart:
        for path in EXAMPLE_VALUES:
            values = example(path)
            assert isinstance(values, dict) and values, f"{path.name} sets nothing"
            chart.validate_schema(values)
