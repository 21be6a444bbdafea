"""The names the operator shares with the chart, the webhook, the sidecar and the API server, in one
place: the MCPPolicy resource, labels, annotations, finalizer, field managers, condition types.

Changing one of these is a migration (objects in clusters carry them), not a refactor.
"""

from __future__ import annotations

from typing import Final

# --- the MCPPolicy resource ----------------------------------------------------------------------
GROUP: Final = "mcp.jupyterhub.org"
VERSION: Final = "v1alpha1"
PLURAL: Final = "mcppolicies"
KIND: Final = "MCPPolicy"
API_VERSION: Final = f"{GROUP}/{VERSION}"

# --- user pods (KubeSpawner's labels and annotations) --------------------------------------------
USER_POD_LABELS: Final = {"component": "singleuser-server"}
USER_POD_SELECTOR: Final = "component=singleuser-server"  # the same, as a label selector string
ANN_USERNAME: Final = "hub.jupyter.org/username"  # raw hub name; the label of the same name is a slug
ANN_SERVERNAME: Final = "hub.jupyter.org/servername"
ANN_GROUPS: Final = "mcp.jupyterhub.org/groups"

# --- what the webhook writes on a pod ------------------------------------------------------------
ANN_INJECTED: Final = "mcp.jupyterhub.org/injected"  # "<policy>/<generation>"
LABEL_POD: Final = "mcp.jupyterhub.org/pod"  # lets the Service / NetworkPolicy select exactly this pod

# --- what the operator writes on its children and token Secrets ---------------------------------
MANAGED_BY: Final = {"app.kubernetes.io/managed-by": "jupyterhub-mcp"}
MANAGED_BY_SELECTOR: Final = "app.kubernetes.io/managed-by=jupyterhub-mcp"
LABEL_POLICY: Final = "mcp.jupyterhub.org/policy"
ANN_GENERATION: Final = "mcp.jupyterhub.org/policy-generation"
ANN_TOKEN_ID: Final = "mcp.jupyterhub.org/token-id"
ANN_EXPIRES_AT: Final = "mcp.jupyterhub.org/token-expires-at"
ANN_POLICY: Final = "mcp.jupyterhub.org/policy"
ANN_USER: Final = "mcp.jupyterhub.org/user"  # so the Secret alone says whose token to revoke
ANN_SERVER: Final = "mcp.jupyterhub.org/server"
ANN_HUB_API: Final = "mcp.jupyterhub.org/hub-api-url"  # where the token was minted: revoked there too
# On every token Secret: the Secret stays until its token is revoked at the hub (or has expired).
FINALIZER: Final = "mcp.jupyterhub.org/revoke-token"
# kopf's own (its default name, not changed here): it puts it on the token Secrets it runs timers on.
KOPF_FINALIZER: Final = "kopf.zalando.org/KopfFinalizerMarker"

# --- server-side apply field managers (one per writer, so none clobbers another's fields) --------
FIELD_MANAGER: Final = "jupyterhub-mcp"  # children
FIELD_MANAGER_STATUS: Final = "jupyterhub-mcp-status"  # the policy's counts and Ready condition
FIELD_MANAGER_TOKENS: Final = "jupyterhub-mcp-tokens"  # the policy's HubTokens condition
APPLY_PATCH: Final = "application/apply-patch+yaml"

# --- policy status conditions --------------------------------------------------------------------
CONDITION_READY: Final = "Ready"
CONDITION_HUB_TOKENS: Final = "HubTokens"

# --- Gateway API (route mode gateway) -------------------------------------------------------------
GATEWAY_GROUP: Final = "gateway.networking.k8s.io"
GATEWAY_VERSION: Final = "v1"
HTTPROUTES: Final = "httproutes"

# --- configurable-http-proxy (Zero to JupyterHub's proxy) ----------------------------------------
# In the data of every CHP route the operator adds; never "jupyterhub" (the hub's own mark) nor
# "user" (what the hub's user routes carry), so the hub's route check never touches ours.
ROUTE_MARK: Final = "jupyterhub_mcp"  # the same mark local mode (mcp_local.routes) puts on its routes
PROXY_API_URL: Final = "http://proxy-api:8001"  # Z2JH's Service in front of CHP's REST API
# Z2JH's Service in front of CHP's public port: where the Reachable check asks in mode proxy.
PROXY_PUBLIC_URL: Final = "http://proxy-public"
# Z2JH keeps CHP's token in its Secret `hub` under this key (also mounted into the proxy pod).
PROXY_TOKEN_SECRET: Final = "hub"
PROXY_TOKEN_KEY: Final = "hub.config.ConfigurableHTTPProxy.auth_token"
