"""The extras tell the truth: the wheel, installed into clean venvs, runs each console script.

One wheel per session (``pip wheel --no-deps .``); one clean venv per install:

- ``base``: ``pip install <wheel>``: the sidecar and the operator both start; ``jupyterhub-mcp demo``
  shows its help, and refuses to run with a message naming ``pip install 'jupyterhub-mcp[demo]'``.
- ``demo``: ``pip install <wheel>[demo]``: everything ``jupyterhub-mcp demo`` imports and runs is there.
- ``sidecar`` / ``operator``: the image recipe, replayed from the Dockerfile's venv stage (the wheel
  without its dependencies, then only that program's extra): the program starts, and the other
  program's dependencies are absent.

Dependencies are downloaded from PyPI once into a wheelhouse under the tools cache
(``~/.cache/jupyterhub-mcp/wheelhouse``, pip's own HTTP cache does not keep them here); the venvs
install from it alone (``--no-index``) and skip byte-compiling: about 2.5 min on 2 busy CPUs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness.paths import CACHE, REPO

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(900)]

DIST = "jupyterhub-mcp"
DEMO_HINT = "pip install 'jupyterhub-mcp[demo]'"
SCRIPTS = ("jupyterhub-mcp-sidecar", "jupyterhub-mcp-operator", "jupyterhub-mcp")
DOCKERFILES = {"sidecar": REPO / "sidecar" / "Dockerfile", "operator": REPO / "operator" / "Dockerfile"}
# What must not reach the other program's image (import names).
FOREIGN = {"sidecar": ("kopf", "kubernetes"), "operator": ("mcp", "pycrdt", "jupyter_ydoc", "uvicorn")}


WHEELHOUSE = CACHE / "wheelhouse"
# Every install in a clean venv: from the wheelhouse only, no .pyc compilation.
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE), "PIP_NO_COMPILE": "1"}


def run(
    *args: str | Path, timeout: float = 600, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env} if env else None,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{shlex.join(map(str, args))} -> {result.returncode}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", out)
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="session")
def wheelhouse(wheel: Path) -> Path:
    """Wheels of every dependency of every install below (all are within base + demo)."""
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    fill = [sys.executable, "-m", "pip", "wheel", "-q", "-w", WHEELHOUSE, f"{wheel}[demo]"]
    if run(*fill, env=OFFLINE, check=False).returncode != 0:  # something new: ask PyPI
        run(*fill, "--find-links", WHEELHOUSE)
    for own in WHEELHOUSE.glob("jupyterhub_mcp-*.whl"):
        own.unlink()  # the wheel under test is always the one just built
    return WHEELHOUSE


def requirements(wheel: Path) -> dict[str, set[str]]:
    """Requires-Dist of the wheel by extra ("" = base), markers dropped."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(name).decode()
    by_extra: dict[str, set[str]] = {}
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist: "):
            continue
        requirement, _, marker = line.removeprefix("Requires-Dist: ").partition(";")
        extra = re.search(r'extra == "([^"]+)"', marker)
        by_extra.setdefault(extra.group(1) if extra else "", set()).add(requirement.strip())
    return by_extra


def image_recipe(kind: str) -> str:
    """The Dockerfile's `RUN python -m venv /opt/venv ...` instruction, continuations joined."""
    text = DOCKERFILES[kind].read_text()
    match = re.search(r"^RUN python -m venv /opt/venv(?:[^\n]*\\\n)*[^\n]*$", text, re.MULTILINE)
    assert match, f"{DOCKERFILES[kind]}: no `RUN python -m venv /opt/venv` instruction"
    return match.group(0).removeprefix("RUN ").replace("\\\n", " ")


def make_venv(root: Path, kind: str, wheel: Path) -> Path:
    venv = root / kind
    if kind in DOCKERFILES:
        # The image's own commands, with this test's paths (and the pip cache, for speed).
        command = (
            image_recipe(kind)
            .replace("python -m venv", f"{shlex.quote(sys.executable)} -m venv", 1)
            .replace("/opt/venv", str(venv))
            .replace("/wheels/*.whl", str(wheel))
            .replace("/tmp/requirements.txt", str(root / f"{kind}-requirements.txt"))
            .replace("--no-cache-dir", "")
        )
        run("sh", "-c", command, env=OFFLINE)
    else:
        run(sys.executable, "-m", "venv", venv)
        target = f"{wheel}[{kind}]" if kind != "base" else str(wheel)
        run(venv / "bin" / "python", "-m", "pip", "install", "-q", target, env=OFFLINE)
    return venv


@pytest.fixture(scope="session")
def venvs(tmp_path_factory: pytest.TempPathFactory, wheel: Path, wheelhouse: Path) -> dict[str, Path]:
    """All four clean installs, two at a time (pip is mostly waiting on the network or the disk)."""
    root = tmp_path_factory.mktemp("venvs")
    kinds = ("demo", "base", "sidecar", "operator")
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(kinds, pool.map(lambda kind: make_venv(root, kind, wheel), kinds), strict=True))
    return done


def has_module(venv: Path, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return run(venv / "bin" / "python", "-c", probe, check=False).returncode == 0


def test_base_is_the_union_of_the_programs(wheel: Path) -> None:
    """`pip install jupyterhub-mcp` gives both programs; each extra is one program, complete."""
    reqs = requirements(wheel)
    assert {"sidecar", "operator", "demo", "test"} <= set(reqs), sorted(reqs)
    assert reqs[""] == reqs["sidecar"] | reqs["operator"]
    assert "jupyterhub-mcp[demo]" in reqs["test"]


@pytest.mark.parametrize("kind", ["base", "demo"])
def test_every_console_script_starts(venvs: dict[str, Path], kind: str) -> None:
    bin_dir = venvs[kind] / "bin"
    for script in SCRIPTS:
        result = run(bin_dir / script, "--help", timeout=120, check=False)
        assert result.returncode == 0, f"{kind}: {script} --help\n{result.stderr[-4000:]}"
        assert "usage:" in result.stdout
    demo_help = run(bin_dir / "jupyterhub-mcp", "demo", "--help", timeout=120)
    assert DEMO_HINT.replace(" ", "") in "".join(demo_help.stdout.split())  # wrapped by argparse


def test_base_install_names_the_demo_extra(venvs: dict[str, Path], tmp_path: Path) -> None:
    result = run(
        venvs["base"] / "bin" / "jupyterhub-mcp", "demo", "--state-dir", tmp_path, timeout=120, check=False
    )
    assert result.returncode == 2, result.stderr
    assert DEMO_HINT in result.stderr and "jupyterhub" in result.stderr, result.stderr
    assert not (tmp_path / "jupyterhub.sqlite").exists()  # refused before starting anything


def test_demo_install_has_what_the_demo_runs(venvs: dict[str, Path]) -> None:
    python = venvs["demo"] / "bin" / "python"
    run(
        python,
        "-c",
        "from mcp_local.cli import missing_demo_packages; import mcp_local.demo, mcp_local.spawner; "
        "missing = missing_demo_packages(); assert not missing, missing",
        timeout=120,
    )
    # What the hub runs: its own command, and the single-user server each spawn starts.
    for script in ("jupyterhub", "jupyterhub-singleuser"):
        run(venvs["demo"] / "bin" / script, "--version", timeout=120)


@pytest.mark.parametrize(
    "kind",
    [
        "sidecar",
        "operator",
    ],
)
def test_each_image_installs_only_its_program(venvs: dict[str, Path], kind: str) -> None:
    venv = venvs[kind]
    run(venv / "bin" / f"jupyterhub-mcp-{kind}", "--help", timeout=120)
    present = [module for module in FOREIGN[kind] if has_module(venv, module)]
    assert present == [], f"the {kind} image would carry {present}"
