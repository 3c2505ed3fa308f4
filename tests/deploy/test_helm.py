"""helm/flowgate: real `helm lint` and `helm template` (the Helm v4 library through
helm-python-sdk), every rendered object validated against the Kubernetes 1.33 schemas in strict
mode (kubernetes-validate), and the properties operators rely on."""

from __future__ import annotations

import copy
import os
import time
from typing import Any

import httpx
import pytest
from deploy_support import CHART_DIR, SERVICES, Manifests, flowgate_binary, free_port

KUBE_VERSION = "1.33.0"
# Environment every Flowgate pod reads from a Secret, never from a literal value.
SECRET_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "ADMIN_API_KEY",
    "FLOWGATE__SECURITY__KEY_HASH_SECRET",
    "FLOWGATE__SECURITY__INTERNAL_TOKEN",
)
HELM_SEVERITY_WARNING = 2

# Variants every structural test runs against.
EXTERNAL_MINIMAL = {
    "postgresql": {"bundled": False, "existingSecret": "db", "existingSecretKey": "url"},
    "redis": {"bundled": False, "existingSecret": "cache", "existingSecretKey": "url"},
    "auth": {"existingSecret": "flowgate-auth"},
}
EVERYTHING_ON = {
    "ingress": {"enabled": True, "exposeManagementApi": True},
    "serviceMonitor": {"enabled": True},
    "networkPolicy": {"extraProxyFrom": [{"podSelector": {"matchLabels": {"app": "client"}}}]},
}


@pytest.fixture(scope="module")
def variants(render, production_values) -> dict[str, Manifests]:
    return {
        "default": render(None),
        "production": render(production_values),
        "external-minimal": render(EXTERNAL_MINIMAL),
        "everything-on": render(EVERYTHING_ON),
    }


def deployments(m: Manifests) -> dict[str, dict[str, Any]]:
    return {name: m.component("Deployment", name) for name in SERVICES}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


# --------------------------------------------------------------------------------------------
# helm lint / template / schema validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["default", "production"])
def test_helm_lint_is_clean(helm, production_values, which):
    values = production_values if which == "production" else None
    report = helm.lint(str(CHART_DIR), values, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["total_charts_linted"] == 1
    problems = [m for m in report["messages"] if m["severity"] >= HELM_SEVERITY_WARNING]
    assert report["errors"] == [] and problems == [], report


def test_helm_lint_reports_errors(helm):
    """The lint call is live: values that break the schema are reported."""
    bad = {"proxy": {"resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}}
    report = helm.lint(str(CHART_DIR), bad, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"], report


def test_template_renders_default_and_production(variants):
    for name in ("default", "production"):
        m = variants[name]
        kinds = {o["kind"] for o in m.objects}
        assert {
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Job",
            "NetworkPolicy",
            "ConfigMap",
            "ServiceAccount",
        } <= kinds, (name, kinds)
        assert "Flowgate" in m.notes, name
    assert "Ingress" in {o["kind"] for o in variants["production"].objects}
    assert "StatefulSet" in {o["kind"] for o in variants["default"].objects}


@pytest.mark.parametrize("variant", ["default", "production", "external-minimal", "everything-on"])
def test_every_manifest_validates_against_kubernetes_schemas(variants, variant):
    from kubernetes_validate import utils as kv

    checked = 0
    for obj in variants[variant].objects:
        if obj["apiVersion"] == "monitoring.coreos.com/v1":
            # A Prometheus Operator CRD, not in the Kubernetes schemas: checked by shape below.
            assert obj["kind"] == "ServiceMonitor"
            assert obj["spec"]["selector"]["matchLabels"]
            assert all(ep["port"] == "http" and ep["path"] == "/metrics" for ep in obj["spec"]["endpoints"])
            continue
        try:
            kv.validate(obj, KUBE_VERSION, strict=True)
        except kv.ValidationError as err:
            source = variants[variant].sources[id(obj)]
            pytest.fail(f"{source}: {obj['kind']}/{obj['metadata']['name']}: {err.message} at {list(err.path)}")
        checked += 1
    assert checked >= 20


def test_strict_validation_rejects_unknown_fields(variants):
    """kubernetes-validate really checks: a misspelt field in a Deployment is rejected."""
    from kubernetes_validate import utils as kv

    broken = copy.deepcopy(variants["default"].component("Deployment", "proxy"))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, KUBE_VERSION, strict=True)


def test_values_schema_enforces_the_rules(chart, helm):
    with pytest.raises(helm.HelmValuesError, match="proxy/resources"):
        chart.render({"proxy": {"resources": {"limits": {"cpu": "2"}}}}, name="flowgate")
    with pytest.raises(helm.HelmValuesError, match="apiServer/resources"):
        chart.render({"apiServer": {"resources": {"limits": {"cpu": "1"}}}}, name="flowgate")
    with pytest.raises(helm.HelmValuesError, match="existingSecret"):
        chart.render({"postgresql": {"bundled": False}}, name="flowgate")
    with pytest.raises(helm.HelmValuesError, match="existingSecret"):
        chart.render({"redis": {"bundled": False, "existingSecret": ""}}, name="flowgate")
    with pytest.raises(helm.HelmValuesError, match="not allowed"):
        chart.render({"proxi": {}}, name="flowgate")
    with pytest.raises(helm.HelmValuesError, match="worker/replicas"):
        chart.render({"worker": {"replicas": 3}}, name="flowgate")


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


def test_one_deployment_and_service_per_service_on_its_port(variants):
    for variant, m in variants.items():
        for name, spec in SERVICES.items():
            dep = m.component("Deployment", name)
            svc = m.component("Service", name)
            c = container(dep)
            assert c["ports"] == [{"name": "http", "containerPort": spec["port"], "protocol": "TCP"}]
            # HTTP and gRPC (h2c) share the one port.
            assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(spec["port"], "http")]
            assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"], variant
            env = env_of(c)
            assert env[f"FLOWGATE__{spec['section']}__PORT"]["value"] == str(spec["port"])


def test_the_worker_is_a_deployment_of_one_or_two_replicas_on_its_health_port(variants, render):
    for variant, m in variants.items():
        dep = m.component("Deployment", "worker")
        assert dep["spec"]["replicas"] == 2, variant
        c = container(dep)
        assert c["ports"] == [{"name": "http", "containerPort": 7779, "protocol": "TCP"}]
        env = env_of(c)
        assert env["SERVICE_TYPE"]["value"] == "worker"
        assert env["FLOWGATE__WORKER__PORT"]["value"] == "7779"
        assert "DATABASE_URL" in env and "REDIS_URL" in env, variant
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert m.component("Service", "worker")["spec"]["ports"][0]["port"] == 7779
    assert render({"worker": {"replicas": 1}}).component("Deployment", "worker")["spec"]["replicas"] == 1


def test_hpa_targets_the_proxy_deployment(variants, production_values):
    for variant, m in variants.items():
        (hpa,) = m.kind("HorizontalPodAutoscaler")
        assert hpa["apiVersion"] == "autoscaling/v2"
        proxy = m.component("Deployment", "proxy")
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": proxy["metadata"]["name"],
        }
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
        behavior = hpa["spec"]["behavior"]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
        # The HPA owns the replica count.
        assert "replicas" not in proxy["spec"], variant
    prod_hpa = variants["production"].kind("HorizontalPodAutoscaler")[0]["spec"]
    wanted = production_values["proxy"]["autoscaling"]
    assert (prod_hpa["minReplicas"], prod_hpa["maxReplicas"]) == (wanted["minReplicas"], wanted["maxReplicas"])


def test_hpa_can_be_disabled(render):
    m = render({"proxy": {"autoscaling": {"enabled": False}, "replicas": 4}})
    assert m.kind("HorizontalPodAutoscaler") == []
    assert m.component("Deployment", "proxy")["spec"]["replicas"] == 4


def test_migrate_job_is_a_pre_install_pre_upgrade_hook(variants):
    for variant in ("production", "external-minimal"):
        m = variants[variant]
        (job,) = m.kind("Job")
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade", variant
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        (c,) = pod["containers"]
        env = env_of(c)
        assert env["SERVICE_TYPE"]["value"] == "migrate"
        # A pre-install hook runs before the release's own objects exist: it may only use the
        # pre-existing database Secret, not the chart's ServiceAccount/ConfigMap/Secrets.
        ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        external = m is variants["production"]
        assert ref["name"] == ("flowgate-datastores" if external else "db")
        assert "serviceAccountName" not in pod
        assert all("configMap" not in v for v in pod.get("volumes", []))
        assert all("valueFrom" not in e or e["name"] == "DATABASE_URL" for e in c["env"])


def test_migrate_with_bundled_database_runs_after_install_and_waits_for_it(variants):
    (job,) = variants["default"].kind("Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    (init,) = job["spec"]["template"]["spec"]["initContainers"]
    assert "pg_isready" in " ".join(init["command"])


def test_cpu_and_memory_limits(variants):
    for variant, m in variants.items():
        for name, dep in deployments(m).items():
            resources = container(dep)["resources"]
            assert "memory" in resources["limits"], (variant, name)
            assert "memory" in resources["requests"] and "cpu" in resources["requests"], (variant, name)
            if name in ("proxy", "api-server"):
                assert "cpu" not in resources["limits"], (variant, name)


def test_probes_use_health_and_readyz(variants):
    for variant, m in variants.items():
        for name, dep in deployments(m).items():
            c = container(dep)
            assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}, (variant, name)
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, (variant, name)
            assert c["startupProbe"]["httpGet"]["path"] == "/health"


def test_environment_of_every_pod(variants):
    for variant, m in variants.items():
        services = {name: m.component("Service", name) for name in SERVICES}
        for name, dep in deployments(m).items():
            env = env_of(container(dep))
            assert env["SERVICE_TYPE"]["value"] == name
            for secret_var in SECRET_VARS:
                assert "value" not in env[secret_var], (variant, name, secret_var)
                assert env[secret_var]["valueFrom"]["secretKeyRef"]["name"], (variant, name, secret_var)
            # The binary binds 127.0.0.1 by default; a pod is reached on its pod IP.
            assert env["FLOWGATE__SERVER__HOST"]["value"] == "0.0.0.0", (variant, name)
            assert env["LOG_FORMAT"]["value"] == "json"
            assert env["FLOWGATE_CONFIG"]["value"] == "/etc/flowgate/config.yaml"
            assert env["FLOWGATE_DATA_DIR"]["value"] == "/data"
        proxy_env = env_of(container(m.component("Deployment", "proxy")))
        for var, peer in (
            ("FLOWGATE__PROXY__API_SERVER_URL", "api-server"),
            ("FLOWGATE__PROXY__COMPLIANCE_URL", "compliance"),
            ("FLOWGATE__PROXY__POLICY_URL", "policy"),
        ):
            svc = services[peer]
            assert proxy_env[var]["value"] == f"http://{svc['metadata']['name']}:{svc['spec']['ports'][0]['port']}"
        assert proxy_env["FLOWGATE__PROXY__TRUSTED_PROXIES"]["value"]


def test_every_service_shares_datastores_secrets_and_log_format(variants):
    """The four services read DATABASE_URL, REDIS_URL, ADMIN_API_KEY and the key-hash secret from
    the same Secret keys (one hash secret on proxy and api-server, or no issued key would verify),
    the migrate Job uses the same DATABASE_URL, and everything logs JSON."""
    for variant, m in variants.items():
        envs = {name: env_of(container(dep)) for name, dep in deployments(m).items()}
        for var in SECRET_VARS:
            refs = {name: env[var]["valueFrom"]["secretKeyRef"] for name, env in envs.items()}
            assert len({(r["name"], r["key"]) for r in refs.values()}) == 1, (variant, var, refs)
        for env in envs.values():
            assert env["LOG_FORMAT"]["value"] == "json", variant
        ref = envs["proxy"]["FLOWGATE__SECURITY__KEY_HASH_SECRET"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "key-hash-secret", variant
        assert ref["name"] == envs["api-server"]["ADMIN_API_KEY"]["valueFrom"]["secretKeyRef"]["name"], variant
        token = envs["proxy"]["FLOWGATE__SECURITY__INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert token == {"name": ref["name"], "key": "internal-token"}, variant
        (job,) = m.kind("Job")
        migrate_env = env_of(job["spec"]["template"]["spec"]["containers"][0])
        assert (
            migrate_env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            == envs["proxy"]["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        ), variant
        assert migrate_env["LOG_FORMAT"]["value"] == "json", variant
        # Every service knows where its peers are (the proxy calls them; the api-server's health
        # overview checks them); only the proxy trusts X-Forwarded-For.
        for var in ("FLOWGATE__PROXY__API_SERVER_URL", "FLOWGATE__PROXY__COMPLIANCE_URL", "FLOWGATE__PROXY__POLICY_URL"):
            assert len({env[var]["value"] for env in envs.values()}) == 1, (variant, var)
        for name in ("api-server", "compliance", "policy"):
            assert "FLOWGATE__PROXY__TRUSTED_PROXIES" not in envs[name], (variant, name)


def test_secrets_by_reference_in_production(variants, production_values):
    m = variants["production"]
    # No Secret objects at all: DSNs, admin key and hash secret all come from existing Secrets.
    assert m.kind("Secret") == []
    env = env_of(container(m.component("Deployment", "proxy")))
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "flowgate-datastores", "key": "database-url"}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "flowgate-datastores", "key": "redis-url"}
    assert env["ADMIN_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "flowgate-auth", "key": "admin-api-key"}
    internal = env["FLOWGATE__SECURITY__INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert internal == {"name": "flowgate-auth", "key": "internal-token"}
    assert {"StatefulSet"} & {o["kind"] for o in m.objects} == set()


def test_bundled_datastores_for_a_trial(variants):
    m = variants["default"]
    pg = m.component("StatefulSet", "postgresql")
    assert pg["spec"]["volumeClaimTemplates"]
    assert m.component("Deployment", "redis")
    secrets = {s["metadata"]["name"]: s for s in m.kind("Secret")}
    assert {"flowgate-postgresql", "flowgate-redis", "flowgate-auth"} <= set(secrets)
    env = env_of(container(m.component("Deployment", "proxy")))
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "flowgate-postgresql", "key": "database-url"}
    # The generated auth Secret holds the internal token beside the admin key and the hash secret.
    assert {"admin-api-key", "key-hash-secret", "internal-token"} <= set(secrets["flowgate-auth"]["data"])
    # Kept on uninstall: the key-hash secret and the password the data volume was initialised with.
    for name in ("flowgate-auth", "flowgate-postgresql"):
        assert secrets[name]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep", name


def test_config_map_mounted_with_checksum(render):
    base = render(None)
    (cm,) = base.kind("ConfigMap")
    assert "config.yaml" in cm["data"]
    changed = render({"config": {"model_list": [{"model_name": "other", "litellm_params": {"model": "mock/x"}}]}})
    for name in SERVICES:
        dep = base.component("Deployment", name)
        pod = dep["spec"]["template"]
        checksum = pod["metadata"]["annotations"]["checksum/config"]
        assert len(checksum) == 64
        mount = {v["name"]: v for v in container(dep)["volumeMounts"]}["config"]
        assert mount["mountPath"] == "/etc/flowgate" and mount["readOnly"] is True
        volume = {v["name"]: v for v in pod["spec"]["volumes"]}["config"]
        assert volume["configMap"]["name"] == cm["metadata"]["name"]
        new = changed.component("Deployment", name)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        assert new != checksum, "pods must roll when config.yaml changes"


def test_pod_hardening_dns_and_data_volume(variants):
    for variant, m in variants.items():
        for name, dep in deployments(m).items():
            pod = dep["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] == 10001
            assert pod["dnsConfig"]["options"] == [{"name": "ndots", "value": "2"}]
            assert pod["automountServiceAccountToken"] is False
            c = container(dep)
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            mounts = {v["mountPath"]: v["name"] for v in c["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/data"]], (variant, name)


def test_pod_disruption_budgets(variants):
    for variant, m in variants.items():
        for name in SERVICES:
            pdb = m.component("PodDisruptionBudget", name)
            dep = m.component("Deployment", name)
            assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
            assert ("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"]), variant
    assert variants["production"].component("PodDisruptionBudget", "proxy")["spec"]["minAvailable"] == 2


def test_scheduling_options_in_production(variants):
    proxy = variants["production"].component("Deployment", "proxy")["spec"]["template"]["spec"]
    assert proxy["affinity"]["nodeAffinity"]
    assert proxy["tolerations"][0]["key"] == "dedicated"
    assert proxy["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    default_proxy = variants["default"].component("Deployment", "proxy")["spec"]["template"]["spec"]
    assert "affinity" not in default_proxy and "tolerations" not in default_proxy


# --------------------------------------------------------------------------------------------
# Network policies and ingress
# --------------------------------------------------------------------------------------------


def _peers(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]


def _is_ingress_ns(peer: dict[str, Any]) -> bool:
    return (
        peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "ingress-nginx"
    )


def _is_flowgate_pods(peer: dict[str, Any]) -> bool:
    labels = peer.get("podSelector", {}).get("matchLabels", {})
    return "namespaceSelector" not in peer and labels == {
        "app.kubernetes.io/instance": "flowgate",
        "app.kubernetes.io/part-of": "flowgate",
    }


def test_network_policies(variants):
    for variant, m in variants.items():
        policies = {p["metadata"]["labels"]["app.kubernetes.io/component"]: p for p in m.kind("NetworkPolicy")}
        assert set(SERVICES) <= set(policies), variant
        for name in SERVICES:
            pol = policies[name]
            assert pol["spec"]["policyTypes"] == ["Ingress"]
            assert pol["spec"]["podSelector"] == m.component("Deployment", name)["spec"]["selector"]
            assert {p["port"] for r in pol["spec"]["ingress"] for p in r["ports"]} == {SERVICES[name]["port"]}
        # Only the ingress controller's namespace reaches the proxy (plus explicitly added peers).
        proxy_peers = _peers(policies["proxy"])
        assert any(_is_ingress_ns(p) for p in proxy_peers)
        assert not any(_is_flowgate_pods(p) for p in proxy_peers)
        # The management plane is reachable from Flowgate pods, from the ingress only if exposed.
        exposed = variant == "everything-on"
        for name in ("api-server", "compliance", "policy"):
            peers = _peers(policies[name])
            assert any(_is_flowgate_pods(p) for p in peers)
            assert any(_is_ingress_ns(p) for p in peers) == exposed, (variant, name)
    # Bundled Postgres/Redis: Flowgate pods only.
    default = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]: p for p in variants["default"].kind("NetworkPolicy")
    }
    for backing in ("postgresql", "redis"):
        peers = _peers(default[backing])
        assert peers and all(_is_flowgate_pods(p) for p in peers), backing
    # Flowgate pod templates carry the labels the policies select on; the datastores do not.
    for name in (*SERVICES, "migrate"):
        kind = "Job" if name == "migrate" else "Deployment"
        labels = variants["default"].component(kind, name)["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "flowgate"
    pg_labels = variants["default"].component("StatefulSet", "postgresql")["spec"]["template"]["metadata"]["labels"]
    assert "app.kubernetes.io/part-of" not in pg_labels


def test_ingress_streaming_annotations_and_routes(variants):
    (ing,) = variants["production"].kind("Ingress")
    ann = ing["metadata"]["annotations"]
    assert ann["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert ann["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert ann["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert ann["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "300"
    assert ann["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "300"
    assert ann["nginx.ingress.kubernetes.io/proxy-body-size"] == "50m"
    assert ing["spec"]["tls"][0]["hosts"] == [ing["spec"]["rules"][0]["host"]]

    def routes(ingress):
        return {p["path"]: p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}

    prod = routes(ing)
    for path in ("/v1", "/anthropic", "/cursor", "/oai", "/a2a", "/api/mcp", "/.well-known", "/health", "/readyz"):
        assert prod[path] == "flowgate-proxy", path
    assert not any(svc != "flowgate-proxy" for svc in prod.values()), "management API must not be public by default"

    (exposed,) = variants["everything-on"].kind("Ingress")
    r = routes(exposed)
    assert r["/api"] == "flowgate-api-server"
    assert r["/api/mcp/tools"] == r["/api/mcp/auth"] == "flowgate-api-server"
    assert r["/api/mcp"] == "flowgate-proxy"
    assert r["/api/compliance"] == "flowgate-compliance"
    assert r["/api/policy"] == "flowgate-policy"


def test_service_monitor_optional(variants):
    assert variants["default"].kind("ServiceMonitor") == []
    (sm,) = variants["production"].kind("ServiceMonitor")
    selector = sm["spec"]["selector"]["matchLabels"]
    for name in SERVICES:
        labels = variants["production"].component("Service", name)["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in selector.items()), name
    # Prometheus may scrape every service when the ServiceMonitor is on.
    for pol in variants["production"].kind("NetworkPolicy"):
        peers = _peers(pol)
        assert any(
            p.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": "monitoring"}
            for p in peers
        )


def test_release_name_flows_into_service_urls(render):
    m = render(EXTERNAL_MINIMAL, name="prod")
    env = env_of(container(m.component("Deployment", "proxy")))
    assert env["FLOWGATE__PROXY__API_SERVER_URL"]["value"] == "http://prod-flowgate-api-server:7778"
    assert m.component("Service", "api-server")["metadata"]["name"] == "prod-flowgate-api-server"


@pytest.mark.parametrize("variant", ["default", "production"])
def test_config_map_is_accepted_by_flowgate(variants, spawn, tmp_path, variant):
    """The chart's config.yaml is loaded by the real binary: the proxy starts with it and serves."""
    (cm,) = variants[variant].kind("ConfigMap")
    config = tmp_path / "config.yaml"
    config.write_text(cm["data"]["config.yaml"])
    (tmp_path / "data").mkdir()
    port = free_port()
    proxy_env = env_of(container(variants[variant].component("Deployment", "proxy")))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "FLOWGATE_CONFIG": str(config),
        "FLOWGATE_DATA_DIR": str(tmp_path / "data"),
        "ADMIN_API_KEY": "test-admin",
        "FLOWGATE__SECURITY__KEY_HASH_SECRET": "chart-config-test-key-hash-secret-0123456789",
        "FLOWGATE__SECURITY__INTERNAL_TOKEN": "chart-config-test-internal-token-0123456789",
        "FLOWGATE__PROXY__PORT": str(port),
        "FLOWGATE__PROXY__TRUSTED_PROXIES": proxy_env["FLOWGATE__PROXY__TRUSTED_PROXIES"]["value"],
        # Provider keys the model list references as os.environ/NAME (never called here).
        "OPENAI_API_KEY": "sk-test",
        "ANTHROPIC_API_KEY": "sk-ant-test",
    }
    proxy = spawn(f"flowgate-proxy-{variant}", [str(flowgate_binary()), "proxy"], env)
    deadline = time.monotonic() + 60
    while True:
        if proxy.proc.poll() is not None:
            pytest.fail(f"flowgate rejected the {variant} config.yaml (exit {proxy.proc.returncode}):\n{proxy.log_tail()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"proxy with the {variant} config.yaml not healthy in time:\n{proxy.log_tail()}")
        time.sleep(0.25)


def test_the_credentials_kek_reaches_only_the_api_server_and_the_proxy(render):
    without = render()
    for component in ("proxy", "api-server", "compliance", "policy"):
        assert "FLOWGATE_KEK" not in env_of(container(without.component("Deployment", component)))
    m = render({"credentials": {"kekSecret": "flowgate-kek", "kekSecretKey": "kek"}})
    for component in ("proxy", "api-server"):
        env = env_of(container(m.component("Deployment", component)))
        assert env["FLOWGATE_KEK"]["valueFrom"]["secretKeyRef"] == {"name": "flowgate-kek", "key": "kek"}
    for component in ("compliance", "policy"):
        assert "FLOWGATE_KEK" not in env_of(container(m.component("Deployment", component)))
