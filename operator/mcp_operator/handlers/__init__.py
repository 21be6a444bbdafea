"""The kopf handlers, and nothing else: each a few lines that hand the event to a domain object
held in the operator memo (`state.OperatorState`). Registered by `register`, not at import, so
intervals come from the one `OperatorConfig`.

| module        | reacts to                                   | hands it to                     |
|---------------|---------------------------------------------|---------------------------------|
| lifecycle     | operator start-up / clean-up                | kopf settings, periodic pass    |
| wiring        | injected pod events, MCPPolicy events       | `wiring.ChildWiring`            |
| tokens        | Running/deleted pods, policies, token Secrets | `token_workers.TokenWorkers`  |
"""

from __future__ import annotations

import kopf

from mcp_operator.config import OperatorConfig
from mcp_operator.handlers import lifecycle, tokens, wiring


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    lifecycle.register(registry)
    wiring.register(registry)
    tokens.register(registry, config)
