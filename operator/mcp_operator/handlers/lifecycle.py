"""Start-up and clean-up: kopf's settings, the periodic reconcile pass, closing what we opened."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import kopf

from mcp_operator.state import OperatorState


async def configure(settings: kopf.OperatorSettings, memo: OperatorState, **_: Any) -> None:
    # kopf turns every handler log line into an Event by default; with 300 pods that floods the
    # API server. Only the explicit Events of `events.py` are posted.
    settings.posting.loggers = False
    # The CRD is installed before the operator starts and it watches only its own namespaces:
    # cluster scanning would need a ClusterRole and buy nothing.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # The synchronous Kubernetes client runs in threads; the default pool (CPUs + 4) would queue
    # the children of hundreds of pods spawning together behind a handful of workers.
    loop = asyncio.get_running_loop()
    loop.set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="kube")
    )
    task = loop.create_task(memo.reconcile.run_forever())
    memo.background.add(task)


async def clean_up(memo: OperatorState, **_: Any) -> None:
    for task in memo.background:
        task.cancel()
    await memo.wiring.close()
    await memo.tokens.close()


def register(registry: kopf.OperatorRegistry) -> None:
    # A registry of our own starts without kopf's default login: the kubernetes client's, as the
    # default registry would pick it (in-cluster credentials, else the kubeconfig).
    kopf.on.login(registry=registry)(kopf.login_via_client)
    kopf.on.startup(registry=registry)(configure)
    kopf.on.cleanup(registry=registry)(clean_up)
