"""The test harness: what the tiers and bench/ use to start and talk to the real components.

Tests and benchmarks import only ``tests.harness`` and ``tests.fixtures`` (pytest fixtures over
these helpers); no test module imports another (tests/unit/test_layout.py checks it).

| module      | what |
|-------------|------|
| paths       | REPO, VENV_BIN, NODE_BIN, CACHE, free_port, eventually (a sync poll with a deadline) |
| processes   | die_with_parent (preexec), wait_http (until a port answers), stop (a whole tree) |
| jupyter     | a real jupyter_server; the sidecar in process or as its console script |
| hub         | RunningHub: a real JupyterHub + configurable-http-proxy, tokens, outages, its log |
| demo        | running_demo: the real ``jupyterhub-mcp demo`` process and the users it hands out |
| mcp         | MCP clients (SDK over Streamable HTTP, mcp-remote over stdio), call / fails / text |
| notebooks   | unique, write_notebook, sources, saved_notebook (the one reader of saved notebooks) |
| ydoc        | human: a second Y client in a notebook's room (a JupyterLab tab), wait_until |
| chart       | helm and rendered manifests, the operator's RBAC written once |
| operator    | OperatorProcess (the real operator), its webhook registration, user pods, policies |
| z2jh        | Z2JH: the real Zero to JupyterHub chart (helm), its hub (pinned venv) and CHP, run as pods |
| z2jh_stack  | running_stack / McpStack: this project (CRD, policy, operator, webhook) on a Z2JH release |
| nodeagent   | NodeAgent: a Node whose pods run as processes in network namespaces (the Z2JH tier) |
"""
