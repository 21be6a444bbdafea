"""What the kopf handlers share, kept in kopf's operator `memo` (no module globals): built once by
`cli.main` before kopf starts, read by every handler through its `memo` argument."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from mcp_operator.config import OperatorConfig
from mcp_operator.index import PolicyIndex
from mcp_operator.injection import InjectionOptions
from mcp_operator.kube import Kube
from mcp_operator.reconcile import PeriodicReconcile
from mcp_operator.token_workers import TokenWorkers
from mcp_operator.wiring import ChildWiring


@dataclass
class OperatorState:
    config: OperatorConfig
    kube: Kube
    index: PolicyIndex
    options: InjectionOptions
    wiring: ChildWiring
    tokens: TokenWorkers
    reconcile: PeriodicReconcile
    background: set[asyncio.Task[None]] = field(default_factory=set)
