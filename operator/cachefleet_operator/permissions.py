"""Every Kubernetes permission the operator uses, in one table: RBAC is generated from it.

``kube.py`` checks each request it sends against this table (``required``/``declared``), so
code that starts using a verb or resource the table does not name fails at once, in every test
and under any credentials, instead of only in a cluster whose RBAC was generated without it.
``cachefleet rbac`` and the Helm chart's ``files/rbac-rules.yaml`` are rendered from ``RULES``.

Scopes:
- ``watched``: in every namespace whose CacheClusters the operator watches (a Role per namespace,
  or one ClusterRole bound cluster-wide with ``--all-namespaces``);
- ``own``: the operator's own namespace (its Lease and the webhook's certificate Secret);
- ``cluster``: cluster-scoped objects (the webhook configuration, by name only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Scope = Literal["watched", "own", "cluster"]

# Names the chart sets (and the operator is told) for the objects it manages by name.
LEASE_NAME = "cachefleet-operator"
WEBHOOK_SECRET = "cachefleet-webhook-tls"
WEBHOOK_CONFIGURATION = "cachefleet-sidecar-injector"


@dataclass(frozen=True)
class Rule:
    scope: Scope
    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    # Restricted to these object names ("" entries are filled in from the configured names).
    resource_names: tuple[str, ...] = ()


RULES: tuple[Rule, ...] = (
    Rule(
        "watched",
        "cachefleet.io",
        ("cacheclusters",),
        ("get", "list", "watch"),
        "the watch (kopf), each reconcile's fresh read, the webhook's look-up",
    ),
    Rule("watched", "cachefleet.io", ("cacheclusters/status",), ("patch",), "the status"),
    Rule(
        "watched",
        "apps",
        ("statefulsets",),
        ("list", "create", "patch", "delete"),
        "shards and the gutter: server-side apply (patch, create when absent)",
    ),
    Rule(
        "watched",
        "",
        ("services", "configmaps"),
        ("list", "create", "patch", "delete"),
        "headless Services, the redis.conf and sidecar ConfigMaps",
    ),
    Rule(
        "watched",
        "",
        ("secrets",),
        ("get", "list", "create"),
        "the generated password (created once), spec.auth.existingSecret (get)",
    ),
    Rule(
        "watched",
        "policy",
        ("poddisruptionbudgets",),
        ("list", "create", "patch", "delete"),
        "disruption budgets of the shards and the gutter",
    ),
    Rule(
        "watched",
        "",
        ("pods",),
        ("list",),
        "labelled pods that started without their sidecar (webhook down, failurePolicy Ignore)",
    ),
    Rule("watched", "", ("events",), ("create",), "Events on CacheClusters and injected pods"),
    Rule(
        "own",
        "coordination.k8s.io",
        ("leases",),
        ("get", "update"),
        "leader election: read and renew the Lease",
        (LEASE_NAME,),
    ),
    Rule("own", "coordination.k8s.io", ("leases",), ("create",), "leader election: first Lease"),
    Rule(
        "own",
        "",
        ("secrets",),
        ("get", "update"),
        "the webhook's CA and serving certificate, rotated by the leader",
        (WEBHOOK_SECRET,),
    ),
    Rule("own", "", ("secrets",), ("create",), "the webhook's certificate Secret, the first time"),
    Rule(
        "cluster",
        "admissionregistration.k8s.io",
        ("mutatingwebhookconfigurations",),
        ("get", "patch"),
        "keep the injection webhook's caBundle current",
        (WEBHOOK_CONFIGURATION,),
    ),
)


@dataclass(frozen=True)
class Access:
    """One request as RBAC sees it."""

    group: str
    resource: str  # with "/subresource" when there is one
    verb: str
    namespace: str | None  # None: cluster-scoped
    name: str | None


class UndeclaredAccess(Exception):
    """A request the operator's RBAC (``RULES``) would not allow."""


_RESOURCE_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?"
    r"(?:/(?P<sub>[^/]+))?$"
)
_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def required(method: str, path: str, query: dict[str, str] | None = None) -> Access | None:
    """What RBAC checks for ``method path``; None for non-resource paths (discovery, /version)."""
    bare = path.split("?", 1)[0]
    match = _RESOURCE_PATH.match(bare)
    if match is None or (match["core"] is None and match["group"] is None):
        return None
    # /apis/GROUP and /apis/GROUP/VERSION are discovery, not resources.
    if match["group"] is not None and match["resource"] is None:
        return None
    group = match["group"] or ""
    resource = match["resource"]
    if match["sub"]:
        resource = f"{resource}/{match['sub']}"
    name = match["name"]
    if method == "GET":
        watching = (query or {}).get("watch") in ("true", "1")
        verb = "watch" if watching else ("get" if name else "list")
    else:
        verb = _METHOD_VERBS[method]
    return Access(group, resource, verb, match["namespace"], name)


@dataclass(frozen=True)
class Grant:
    """Where the generated RBAC applies: what ``declared`` checks a request against."""

    own_namespace: str | None = None
    # None: every namespace (--all-namespaces).
    watched: frozenset[str] | None = None
    # Configured names of the objects managed by name, by their default name.
    names: tuple[tuple[str, str], ...] = ()

    def scopes(self, namespace: str | None) -> tuple[Scope, ...]:
        if namespace is None:
            # Cluster-wide lists of the watched kinds are what --all-namespaces is bound for.
            return ("cluster", "watched") if self.watched is None else ("cluster",)
        found: list[Scope] = []
        if self.watched is None or namespace in self.watched:
            found.append("watched")
        if namespace == self.own_namespace:
            found.append("own")
        return tuple(found)


def declared(access: Access, grant: Grant) -> bool:
    """Whether some rule allows ``access``: the runtime twin of the generated RBAC."""
    scopes = grant.scopes(access.namespace)
    for rule in RULES:
        if rule.scope not in scopes or rule.group != access.group:
            continue
        if access.resource not in rule.resources or access.verb not in rule.verbs:
            continue
        allowed_names = resolved_names(rule, dict(grant.names))
        if allowed_names and access.name not in allowed_names:
            continue
        return True
    return False


def resolved_names(rule: Rule, names: dict[str, str] | None) -> tuple[str, ...]:
    """The rule's resourceNames with the configured names in place of the defaults."""
    mapping = names or {}
    return tuple(mapping.get(default, default) for default in rule.resource_names)


def check(method: str, path: str, query: dict[str, str] | None, grant: Grant) -> None:
    access = required(method, path, query)
    if access is not None and not declared(access, grant):
        where = f" in {access.namespace}" if access.namespace else ""
        raise UndeclaredAccess(
            f"{access.verb} {access.group or 'core'}/{access.resource}"
            f"{' ' + access.name if access.name else ''}{where} is not in the operator's RBAC "
            "rules (cachefleet_operator/permissions.py)"
        )
