"""The operator command refuses bad configuration with a message that says what is wrong,
before it touches the cluster."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.fixtures.tools import VENV_BIN


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MCP_OPERATOR_NAMESPACE"}
    env["KUBECONFIG"] = "/nonexistent/kubeconfig"
    return subprocess.run(
        [str(VENV_BIN / "jupyterhub-mcp-operator"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--namespace=jhub", "--ingress-controller-selector=app"], "not key=value"),
        (["--namespace=jhub", "--ingress-controller-selector=node=x;pod=a=b"], "must start with ns= or pod="),
        ([], "no namespace to watch"),
        (["--namespace=jhub", "--native-sidecar=maybe"], "invalid choice: 'maybe'"),
        (["--namespace=jhub", "--tls-reload-interval=0"], "--tls-reload-interval must be a positive"),
        (["--namespace=jhub", "--proxy-api-url=proxy-api:8001"], "--proxy-api-url must be an http(s) URL"),
        (["--namespace=jhub", "--network-extra-peers={"], "must be a JSON list of NetworkPolicy peers"),
        (["--namespace=jhub", '--network-extra-peers=[{"cidr": "10.0.0.0/8"}]'], "objects with ipBlock"),
    ],
)
def test_bad_configuration_is_refused(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode != 0
    assert message in result.stderr
