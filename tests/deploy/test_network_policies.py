"""The rendered overlays' NetworkPolicies, evaluated (tests/deploy/netpol.py) on the
pods they would run: default deny; the trainer reachable from the gateway only; the
feature service from the trainer, the gateway's health checks and namespaces labelled
hitl/feature-client=true; the feature service's and the trainer's egress to public
addresses only, plus DNS."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.deploy.manifests import OVERLAYS, containers, get, objects
from tests.deploy.netpol import Endpoint, allowed

NAMESPACE = "hitl"
PUBLIC = ("142.250.74.100", "52.216.0.1", "2a00:1450:4001:82b::2010")
FORBIDDEN = ("169.254.169.254", "10.96.0.1", "10.244.1.7", "172.16.3.4", "192.168.1.10",
             "100.64.0.5", "127.0.0.1", "0.0.0.0", "fd00:ec2::254", "fe80::1", "::1",
             "::ffff:169.254.169.254", "224.0.0.1")


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def policies(overlay: str) -> list[dict[str, Any]]:
    return objects(overlay, "NetworkPolicy")


def namespace_labels(overlay: str) -> dict[str, str]:
    (namespace,) = objects(overlay, "Namespace")
    # The API server adds this label to every namespace.
    return {**namespace["metadata"].get("labels", {}),
            "kubernetes.io/metadata.name": namespace["metadata"]["name"]}


def pod(overlay: str, kind: str, name: str, ip: str) -> Endpoint:
    workload = get(overlay, kind, name)
    ports = {p["name"]: p["containerPort"] for c in containers(workload) for p in c["ports"]}
    return Endpoint(ip, NAMESPACE, workload["spec"]["template"]["metadata"]["labels"],
                    namespace_labels(overlay), ports)


def pods(overlay: str) -> dict[str, Endpoint]:
    return {"gateway": pod(overlay, "Deployment", "gateway", "10.244.0.10"),
            "trainer": pod(overlay, "Deployment", "trainer", "10.244.0.20"),
            "feature": pod(overlay, "StatefulSet", "feature", "10.244.0.30")}


def elsewhere(ip: str, namespace: str = "team-a", **namespace_labels: str) -> Endpoint:
    return Endpoint(ip, namespace, {"app": "client"},
                    {"kubernetes.io/metadata.name": namespace, **namespace_labels})


STRAY = Endpoint("10.244.0.99", NAMESPACE, {"app": "debug"})  # any other pod in hitl
DNS = Endpoint("10.244.9.2", "kube-system", {"k8s-app": "kube-dns"},
               {"kubernetes.io/metadata.name": "kube-system"})
CLIENT_LABEL = {"hitl/feature-client": "true"}


def test_everything_is_denied_unless_a_policy_allows_it(overlay: str) -> None:
    defaults = [p for p in policies(overlay) if p["spec"]["podSelector"] == {}
                and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}]
    assert defaults and all(not p["spec"].get("ingress") and not p["spec"].get("egress")
                            for p in defaults)
    everyone = pods(overlay)
    stray = Endpoint(STRAY.ip, NAMESPACE, STRAY.labels, namespace_labels(overlay))
    for target in (*everyone.values(), stray):
        assert not allowed(policies(overlay), stray, target, 50052)
    assert not allowed(policies(overlay), stray, Endpoint("169.254.169.254"), 80)
    assert not allowed(policies(overlay), stray, Endpoint(PUBLIC[0]), 443)
    assert allowed(policies(overlay), stray, DNS, 53, "UDP")


def test_the_evaluation_sees_a_policy_that_is_too_open(overlay: str) -> None:
    """The checks here can fail: without the deny-all policies a stray pod reaches the
    metadata service, and without its exceptions so does the feature service."""
    open_ended = [p for p in policies(overlay)
                  if p["metadata"]["name"] not in ("default-deny", "dns")]
    assert allowed(open_ended, STRAY, Endpoint("169.254.169.254"), 80)
    loosened = copy.deepcopy(policies(overlay))
    for policy in loosened:
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                peer.get("ipBlock", {}).pop("except", None)
    assert allowed(loosened, pods(overlay)["feature"], Endpoint("169.254.169.254"), 80)


def test_only_the_gateway_reaches_the_trainer(overlay: str) -> None:
    p, everyone = policies(overlay), pods(overlay)
    trainer = everyone["trainer"]
    port = trainer.ports["grpc"]
    assert allowed(p, everyone["gateway"], trainer, port)
    assert not allowed(p, everyone["feature"], trainer, port)
    assert not allowed(p, elsewhere("10.244.5.5", **CLIENT_LABEL), trainer, port)
    assert not allowed(p, Endpoint("203.0.113.9"), trainer, port)
    assert not allowed(p, everyone["gateway"], trainer, trainer.ports["metrics"])


def test_the_feature_service_answers_its_clients_only(overlay: str) -> None:
    p, everyone = policies(overlay), pods(overlay)
    feature = everyone["feature"]
    port = feature.ports["grpc"]
    assert allowed(p, everyone["trainer"], feature, port)
    assert allowed(p, everyone["gateway"], feature, port)  # readiness reports its health
    assert allowed(p, elsewhere("10.244.5.5", **CLIENT_LABEL), feature, port)
    assert not allowed(p, elsewhere("10.244.5.6"), feature, port)
    assert not allowed(p, elsewhere("10.244.5.7", namespace=NAMESPACE), feature, port)
    assert not allowed(p, Endpoint("203.0.113.9"), feature, port)
    assert not allowed(p, elsewhere("10.244.5.5", **CLIENT_LABEL), feature,
                       feature.ports["metrics"])


def test_fetching_services_reach_public_addresses_only(overlay: str) -> None:
    p, everyone = policies(overlay), pods(overlay)
    for name, ports in (("feature", (80, 443, 8443)), ("trainer", (80, 443))):
        source = everyone[name]
        for port in ports:
            for ip in PUBLIC:
                assert allowed(p, source, Endpoint(ip), port), (name, ip, port)
            for ip in FORBIDDEN:
                assert not allowed(p, source, Endpoint(ip), port), (name, ip, port)
        assert allowed(p, source, DNS, 53, "UDP") and allowed(p, source, DNS, 53, "TCP")
        assert not allowed(p, source, Endpoint("10.96.0.1"), 443)  # the API server
    # The feature service calls no one in the cluster; the trainer only the features.
    assert not allowed(p, everyone["feature"], everyone["trainer"], 50052)
    assert allowed(p, everyone["trainer"], everyone["feature"], 50051)
    assert not allowed(p, everyone["trainer"], everyone["gateway"], 8080)


def test_the_gateway_calls_the_services_and_nothing_outside(overlay: str) -> None:
    p, everyone = policies(overlay), pods(overlay)
    gateway = everyone["gateway"]
    assert allowed(p, Endpoint("203.0.113.9"), gateway, gateway.ports["http"])
    assert allowed(p, gateway, everyone["trainer"], 50052)
    assert allowed(p, gateway, everyone["feature"], 50051)
    for ip in (*PUBLIC, "169.254.169.254"):
        assert not allowed(p, gateway, Endpoint(ip), 443)


def test_prometheus_scrapes_from_a_labelled_namespace(overlay: str) -> None:
    p, everyone = policies(overlay), pods(overlay)
    scraper = elsewhere("10.244.7.7", "monitoring", **{"hitl/metrics-scraper": "true"})
    for target in everyone.values():
        assert allowed(p, scraper, target, target.ports["metrics"])
        assert not allowed(p, elsewhere("10.244.7.8", "monitoring"), target,
                           target.ports["metrics"])


def test_named_ports_in_policies_exist_on_the_pods_they_select(overlay: str) -> None:
    everyone = pods(overlay)
    for policy in policies(overlay):
        selected = [e for e in everyone.values()
                    if policy["spec"]["podSelector"].get("matchLabels", {}).items()
                    <= dict(e.labels).items()]
        for rule in policy["spec"].get("ingress", []):
            for entry in rule.get("ports", []):
                if isinstance(entry.get("port"), str):
                    assert all(entry["port"] in e.ports for e in selected), (
                        policy["metadata"]["name"], entry)
