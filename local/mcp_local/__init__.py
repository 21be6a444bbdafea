"""Local mode: the whole product on one machine, without Kubernetes.

A real JupyterHub (local process spawner) behind configurable-http-proxy; beside each user server
the same sidecar the webhook would inject, with the same environment, routed at
``/user/<name>/mcp`` through the proxy's REST API.
"""
