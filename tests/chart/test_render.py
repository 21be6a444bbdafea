"""The chart rendered by the real `helm` (lint, template, schema), no cluster needed."""

from __future__ import annotations

import base64
import datetime
import json
import tarfile

import pytest
import yaml
from cryptography import x509
from mcp_operator import endpoint

from tests.harness.chart import CHART, FULL_VALUES, NAMESPACED, by_kind, flatten, flatten_rules, one, run_helm
from tests.harness.paths import REPO


@pytest.fixture(scope="module")
def default(render) -> list[dict]:
    return render()


@pytest.fixture(scope="module")
def full(render) -> list[dict]:
    return render("--values", str(FULL_VALUES))


def env_of(deployment: dict) -> dict[str, dict]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize("values", [[], ["--values", str(FULL_VALUES)]], ids=["default", "full"])
def test_helm_lint_strict(helm_bin, values):
    result = run_helm(helm_bin, "lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in result.stdout


def test_crd_copy_is_identical_to_the_source_of_truth():
    # crds/mcppolicy.yaml is the one humans edit; helm needs a real file inside the chart
    # (a symlink breaks `helm package`). To sync: cp crds/mcppolicy.yaml charts/jupyterhub-mcp/crds/
    source = REPO / "crds" / "mcppolicy.yaml"
    copy = CHART / "crds" / "mcppolicy.yaml"
    assert source.is_file(), f"{source} is missing"
    assert copy.is_file(), f"{copy} is missing: cp {source.relative_to(REPO)} {copy.relative_to(REPO)}"
    assert copy.read_bytes() == source.read_bytes(), (
        f"{copy.relative_to(REPO)} differs from {source.relative_to(REPO)}: "
        f"cp {source.relative_to(REPO)} {copy.relative_to(REPO)}"
    )
    assert list((CHART / "crds").iterdir()) == [copy]


def test_helm_package_carries_the_crd(helm_bin, tmp_path):
    run_helm(helm_bin, "package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("jupyterhub-mcp-*.tgz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "jupyterhub-mcp/crds/mcppolicy.yaml" in names
    assert "jupyterhub-mcp/values.schema.json" in names


def test_default_objects(default):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in default)
    assert kinds == [
        ("Deployment", "jupyterhub-mcp"),
        ("MutatingWebhookConfiguration", "jupyterhub-mcp-jhub"),
        ("Role", "jupyterhub-mcp"),
        ("RoleBinding", "jupyterhub-mcp"),
        ("Secret", "jupyterhub-mcp-webhook-tls"),
        ("Service", "jupyterhub-mcp-webhook"),
        ("ServiceAccount", "jupyterhub-mcp"),
    ]
    namespaced = [o for o in default if o["kind"] != "MutatingWebhookConfiguration"]
    assert {o["metadata"]["namespace"] for o in namespaced} == {"jhub"}


@pytest.mark.parametrize("values", ["default", "full"])
def test_rbac_is_exactly_what_the_operator_uses(values, request):
    objects = request.getfixturevalue(values)
    # Nothing cluster-wide: kopf's cluster scanning is off (operator/mcp_operator/handlers/lifecycle.py).
    assert [o["kind"] for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")] == []
    role = one(objects, "Role")
    assert flatten_rules(role["rules"]) == flatten(NAMESPACED)
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
    sa = one(objects, "ServiceAccount")["metadata"]["name"]
    binding = one(objects, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "jhub"}]
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == sa


def test_deployment_runs_one_locked_down_operator(default):
    deployment = one(default, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/jupyterhub-mcp/operator:0.1.0"
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"webhook": 8443, "health": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # The webhook's serving certificate, from the Secret the chart writes, where the CLI expects it.
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["webhook-tls"]["mountPath"] == "/tls" and mounts["webhook-tls"]["readOnly"] is True
    assert volumes["webhook-tls"]["secret"]["secretName"] == one(default, "Secret")["metadata"]["name"]
    assert mounts["tmp"]["mountPath"] == "/tmp" and "emptyDir" in volumes["tmp"]
    env = env_of(deployment)
    assert env["MCP_OPERATOR_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert {
        name: env[name].get("value")
        for name in (
            "MCP_WEBHOOK_PORT",
            "MCP_HEALTH_PORT",
            "MCP_WEBHOOK_TLS_CERT",
            "MCP_WEBHOOK_TLS_KEY",
            "MCP_NATIVE_SIDECAR",
            "MCP_INGRESS_SELECTOR",
            "MCP_SIDECAR_IMAGE",
            "MCP_PROXY_API_URL",
            "MCP_PROXY_TOKEN_SECRET",
            "MCP_PROXY_TOKEN_KEY",
        )
    } == {
        "MCP_WEBHOOK_PORT": "8443",
        "MCP_HEALTH_PORT": "8080",
        "MCP_WEBHOOK_TLS_CERT": "/tls/tls.crt",
        "MCP_WEBHOOK_TLS_KEY": "/tls/tls.key",
        "MCP_NATIVE_SIDECAR": "auto",
        "MCP_INGRESS_SELECTOR": "app.kubernetes.io/name=ingress-nginx",
        "MCP_SIDECAR_IMAGE": "ghcr.io/jupyterhub-mcp/sidecar:0.1.0",
        # route mode proxy: Zero to JupyterHub's proxy-api Service and its Secret `hub`
        "MCP_PROXY_API_URL": "http://proxy-api:8001",
        "MCP_PROXY_TOKEN_SECRET": "hub",
        "MCP_PROXY_TOKEN_KEY": "hub.config.ConfigurableHTTPProxy.auth_token",
    }
    # No public URL configured: the variable is absent rather than empty.
    assert "JUPYTERHUB_PUBLIC_URL" not in env
    # The service token: the one Z2JH generates for hub.services.jupyterhub-mcp, optional
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "hub", "key": "hub.services.jupyterhub-mcp.apiToken", "optional": True}
    }
    # No hub API URL either: each pod's own JUPYTERHUB_API_URL (it has hub.baseUrl in it) is used.
    assert "JUPYTERHUB_API_URL" not in env
    assert "MCP_NETWORK_EXTRA_PEERS" not in env  # none: the operator's default, no peers beyond its own
    # Zero to JupyterHub's hub NetworkPolicy admits only pods with this label; tokens need the hub.
    labels = spec["template"]["metadata"]["labels"]
    assert labels["hub.jupyter.org/network-access-hub"] == "true"
    # ...and its proxy NetworkPolicy admits to proxy-api only pods with this one (proxy routes)
    assert labels["hub.jupyter.org/network-access-proxy-api"] == "true"


def test_webhook_configuration(default):
    (webhook,) = one(default, "MutatingWebhookConfiguration")["webhooks"]
    service = one(default, "Service")
    assert webhook["clientConfig"]["service"] == {
        "name": service["metadata"]["name"],
        "namespace": "jhub",
        "path": "/mutate-pod",
        "port": 443,
    }
    assert service["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == one(default, "Deployment")["spec"]["selector"]["matchLabels"]
    assert webhook["objectSelector"] == {"matchLabels": {"component": "singleuser-server"}}
    assert webhook["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "jhub"}}
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["timeoutSeconds"] == 5
    assert webhook["sideEffects"] == "None"
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["reinvocationPolicy"] == "IfNeeded"
    assert webhook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "operations": ["CREATE"],
            "scope": "Namespaced",
        }
    ]


def test_generated_tls_chains_to_the_ca_bundle_for_the_service_name(default):
    secret = one(default, "Secret")
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert secret["type"] == "kubernetes.io/tls"
    (webhook,) = one(default, "MutatingWebhookConfiguration")["webhooks"]
    assert base64.b64decode(webhook["clientConfig"]["caBundle"]) == data["ca.crt"]
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert "jupyterhub-mcp-webhook.jhub.svc" in names
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert lifetime > datetime.timedelta(days=3600)
    assert b"PRIVATE KEY" in data["tls.key"]


def test_webhook_by_url_for_an_operator_outside_the_cluster(render):
    objects = render(
        "--set",
        "webhook.url=https://127.0.0.1:9443/mutate-pod",
        "--set",
        "webhook.extraCertHosts={127.0.0.1,operator.example.org}",
    )
    (webhook,) = one(objects, "MutatingWebhookConfiguration")["webhooks"]
    assert webhook["clientConfig"]["url"] == "https://127.0.0.1:9443/mutate-pod"
    assert "service" not in webhook["clientConfig"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(one(objects, "Secret")["data"]["tls.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "operator.example.org" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_full_values(full):
    deployment = one(full, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.org/jupyterhub-mcp/operator:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["serviceAccountName"] == "mcp-operator"
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "hub.jupyter.org/dedicated"
    assert "nodeAffinity" in pod["affinity"]
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "research-computing"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"webhook": 9443, "health": 9090}
    env = env_of(deployment)
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "jupyterhub-mcp-hub-token", "key": "api-token"}
    }
    assert env["MCP_SIDECAR_IMAGE"]["value"] == "registry.example.org/jupyterhub-mcp/sidecar:1.2.3"
    assert env["MCP_INGRESS_SELECTOR"]["value"] == (
        "ns=kubernetes.io/metadata.name=ingress-nginx;pod=app.kubernetes.io/name=ingress-nginx"
    )
    assert env["MCP_NATIVE_SIDECAR"]["value"] == "false"
    assert json.loads(env["MCP_NETWORK_EXTRA_PEERS"]["value"]) == [
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}
    ]
    assert env["MCP_WEBHOOK_PORT"]["value"] == "9443" and env["MCP_HEALTH_PORT"]["value"] == "9090"
    assert env["JUPYTERHUB_API_URL"]["value"] == "http://hub.jhub.svc:8081/hub/api"
    assert env["JUPYTERHUB_PUBLIC_URL"]["value"] == "https://hub.example.org/jhub"
    assert "hub.jupyter.org/network-access-hub" not in deployment["spec"]["template"]["metadata"]["labels"]
    assert (
        "hub.jupyter.org/network-access-proxy-api" not in deployment["spec"]["template"]["metadata"]["labels"]
    )
    assert env["MCP_PROXY_API_URL"]["value"] == "http://proxy-api.{namespace}:8001"
    assert (env["MCP_PROXY_TOKEN_SECRET"]["value"], env["MCP_PROXY_TOKEN_KEY"]["value"]) == (
        "chp-token",
        "token",
    )
    assert env["MCP_LOG_LEVEL"]["value"] == "debug"
    assert one(full, "ServiceAccount")["metadata"]["annotations"] == {"example.org/owner": "platform"}

    (webhook,) = one(full, "MutatingWebhookConfiguration")["webhooks"]
    assert webhook["failurePolicy"] == "Fail" and webhook["timeoutSeconds"] == 10

    policy = one(full, "MCPPolicy")
    assert policy["apiVersion"] == "mcp.jupyterhub.org/v1alpha1"
    assert policy["metadata"]["name"] == "everyone" and policy["metadata"]["namespace"] == "jhub"
    values = yaml.safe_load(FULL_VALUES.read_text())
    # the spec as given, with the chart's route.mode where the spec names none
    assert policy["spec"] == {**values["defaultPolicy"]["spec"], "route": {"mode": "ingress"}}


def test_default_policy_gets_the_chart_sidecar_image(render):
    objects = render("--set", "defaultPolicy.enabled=true", "--set", "sidecar.image.tag=9.9.9")
    spec = one(objects, "MCPPolicy")["spec"]
    assert spec["sidecar"] == {"image": "ghcr.io/jupyterhub-mcp/sidecar:9.9.9"}
    assert spec["selection"] == {"users": ["*"]}
    assert spec["route"] == {"mode": "proxy"}  # the chart's route.mode


def test_default_policy_route_lines_up_with_z2jh_from_values(render):
    """The Ingress of Z2JH's ingress.* (host, class, TLS), the Gateway of its httpRoute.gateway."""
    objects = render(
        "--set",
        "defaultPolicy.enabled=true",
        "--set",
        "route.mode=ingress",
        "--set",
        "route.ingress.host=hub.example.org",
        "--set",
        "route.ingress.ingressClassName=nginx",
        "--set",
        "route.ingress.tlsSecretName=hub-tls",
        "--set-json",
        'route.gateway.parentRefs=[{"name": "public", "namespace": "gateways"}]',
        "--set",
        "defaultPolicy.spec.route.host=mcp.example.org",
    )
    assert one(objects, "MCPPolicy")["spec"]["route"] == {
        "mode": "ingress",
        "host": "mcp.example.org",  # the policy's own wins
        "ingressClassName": "nginx",
        "tlsSecretName": "hub-tls",
        "parentRefs": [{"name": "public", "namespace": "gateways"}],
    }


def test_default_policy_route_mode_from_values_unless_its_spec_sets_one(render):
    on = ("--set", "defaultPolicy.enabled=true")
    assert one(render(*on, "--set", "route.mode=gateway"), "MCPPolicy")["spec"]["route"] == {
        "mode": "gateway"
    }
    own = render(*on, "--set", "route.mode=gateway", "--set", "defaultPolicy.spec.route.mode=none")
    assert one(own, "MCPPolicy")["spec"]["route"] == {"mode": "none"}


def test_cert_manager_with_an_existing_issuer(full):
    # cert-manager writes the serving Secret and injects the CA: the chart writes neither.
    assert by_kind(full, "Secret") == [] and by_kind(full, "Issuer") == []
    certificate = one(full, "Certificate")
    assert certificate["spec"]["issuerRef"] == {"name": "cluster-ca", "kind": "ClusterIssuer"}
    configuration = one(full, "MutatingWebhookConfiguration")
    assert configuration["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"jhub/{certificate['metadata']['name']}"
    }
    (webhook,) = configuration["webhooks"]
    assert "caBundle" not in webhook["clientConfig"]
    mounted = one(full, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "webhook-tls", "secret": {"secretName": certificate["spec"]["secretName"]}} in mounted
    assert "hub-mcp-webhook.jhub.svc" in certificate["spec"]["dnsNames"]


def test_cert_manager_self_signed_issuer(render):
    objects = render("--set", "webhook.certManager.enabled=true")
    issuer = one(objects, "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    assert one(objects, "Certificate")["spec"]["issuerRef"] == {
        "name": issuer["metadata"]["name"],
        "kind": "Issuer",
    }


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--set", "operater.image.tag=x"], "additional properties 'operater' not allowed"),
        (["--set", "webhook.failurePolicy=Never"], "/webhook/failurePolicy"),
        (["--set", "webhook.timeoutSeconds=31"], "/webhook/timeoutSeconds"),
        (["--set", "webhook.certManager.enable=true"], "additional properties 'enable' not allowed"),
        (["--set", "operator.nativeSidecar=maybe"], "/operator/nativeSidecar"),
        (["--set", "operator.healthPort=70000"], "/operator/healthPort"),
        (["--set", "hub.apiUrl=hub:8081"], "/hub/apiUrl"),
        (["--set", "hub.publicUrl=hub.example.org"], "/hub/publicUrl"),
        (["--set", "hub.networkAccessLabel=yes"], "/hub/networkAccessLabel"),
        (["--set", "webhook.url=http://127.0.0.1:8443/mutate-pod"], "/webhook/url"),
        (["--set", "defaultPolicy.name=Not_A_Name"], "/defaultPolicy/name"),
        (["--set", "route.mode=nginx"], "/route/mode"),
        (["--set-json", 'networkPolicy.extraPeers=[{"cidr": "10.0.0.0/8"}]'], "/networkPolicy/extraPeers/0"),
        (["--set", "route.proxy.apiUrl=proxy-api:8001"], "/route/proxy/apiUrl"),
    ],
)
def test_schema_rejects_bad_values(helm_bin, args, complaint):
    result = run_helm(helm_bin, "template", "x", str(CHART), *args, check=False)
    assert result.returncode != 0
    assert complaint in result.stderr, result.stderr


def test_notes_show_the_mcp_scopes_as_the_product_defines_them(helm_bin):
    import textwrap

    from mcp_operator import endpoint

    result = run_helm(
        helm_bin, "install", "jupyterhub-mcp", str(CHART), "--namespace", "jhub", "--dry-run=client"
    )
    notes = result.stdout.split("NOTES:", 1)[1]
    start = notes.index("     hub:\n")
    values = yaml.safe_load(textwrap.dedent(notes[start : notes.index("\n\n", start)]))
    wanted = endpoint.z2jh_hub_values()["hub"]
    assert values["hub"]["config"] == wanted["config"]
    assert values["hub"]["loadRoles"]["user"]["scopes"] == wanted["loadRoles"]["user"]["scopes"]


def test_notes_tell_the_admin_the_two_steps(helm_bin):
    result = run_helm(
        helm_bin, "install", "jupyterhub-mcp", str(CHART), "--namespace", "jhub", "--dry-run=client"
    )
    notes = result.stdout.split("NOTES:", 1)[1]
    for expected in (
        "hub:\n       services:\n         jupyterhub-mcp: {}",
        "Secret hub, key hub.services.jupyterhub-mcp.apiToken",
        "prePuller:\n       extraImages:\n         jupyterhub-mcp-sidecar:\n"
        "           name: ghcr.io/jupyterhub-mcp/sidecar",
        "loadRoles:",
        'scopes: ["tokens"]',
        "hub.serviceToken.existingSecret",
        "kubectl -n jhub apply -f",
        f"https://<your hub host>{endpoint.MCP_PATH_TEMPLATE}",
        f"https://<your hub host>{endpoint.NAMED_MCP_PATH_TEMPLATE}",
    ):
        assert expected in notes, expected


def test_the_uninstall_hook_stops_the_operator_then_releases_the_tokens(render):
    """`helm uninstall` first runs `--uninstall` (operator/mcp_operator/uninstall.py; its behaviour
    against a real hub and API server: tests/operator/test_tokens.py) with RBAC of its own: the
    running operator's Role never gets to scale Deployments."""
    hooks = render(hooks=True)
    assert sorted(o["kind"] for o in hooks) == ["Job", "Role", "RoleBinding", "ServiceAccount"]
    for o in hooks:
        annotations = o["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-delete"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        # the ServiceAccount and its Role exist before the Job that uses them
        assert int(annotations["helm.sh/hook-weight"]) == (0 if o["kind"] == "Job" else -10)
    job = one(hooks, "Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["--uninstall", "--operator-deployment=jupyterhub-mcp"]
    assert pod["serviceAccountName"] == one(hooks, "ServiceAccount")["metadata"]["name"]
    assert pod["restartPolicy"] == "Never" and job["spec"]["activeDeadlineSeconds"] == 300
    token = {e["name"]: e for e in container["env"]}["JUPYTERHUB_API_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"]["name"] == "hub"  # the operator's own service token
    rules = one(hooks, "Role")["rules"]
    assert {
        (r["resources"][0], tuple(r.get("resourceNames", ()))) for r in rules if r["apiGroups"] == ["apps"]
    } == {
        ("deployments", ("jupyterhub-mcp",)),
        ("deployments/scale", ("jupyterhub-mcp",)),
    }
    (secrets,) = [r for r in rules if r["resources"] == ["secrets"]]
    assert sorted(secrets["verbs"]) == ["delete", "get", "list", "patch"]
    assert render("--set", "uninstallHook.enabled=false", hooks=True) == []
