"""The Dockerfiles, tested without a container engine (there is none here).

What an image build would do is replayed for real: the files the Dockerfile COPYs into its wheel
stage are copied into a fresh build context, `pip wheel --no-deps` builds the distribution from it,
the wheel is installed into a fresh venv, and the ENTRYPOINT must be one of its console scripts
whose target module is in the wheel. Dependencies are not installed (--no-deps): only the wheel's
own contents and metadata are checked, which keeps this fast.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness.paths import REPO

DOCKERFILES = {
    "sidecar": REPO / "sidecar" / "Dockerfile",
    "operator": REPO / "operator" / "Dockerfile",
}
EXPECTED_ENTRYPOINT = {"sidecar": "jupyterhub-mcp-sidecar", "operator": "jupyterhub-mcp-operator"}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile: (INSTRUCTION, arguments) per stage, continuations joined."""
    stages: list[Stage] = []
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        instruction, _, args = logical.partition(" ")
        logical = ""
        instruction = instruction.upper()
        if instruction == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        else:
            assert stages, f"{instruction} before the first FROM"
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


def instructions(stage: Stage, kind: str) -> list[str]:
    return [args for instruction, args in stage.instructions if instruction == kind]


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Close enough to Docker's matcher for the plain patterns this repo uses."""
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for part_index in range(len(Path(relative).parts)):
            prefix = "/".join(Path(relative).parts[: part_index + 1])
            name = Path(relative).parts[part_index]
            if fnmatch.fnmatch(prefix, pattern) or (pattern != bare and fnmatch.fnmatch(name, bare)):
                return True
    return False


def local_copies(stage: Stage) -> list[tuple[str, str]]:
    """(source, destination) of the COPY instructions that read the build context."""
    copies = []
    for args in instructions(stage, "COPY"):
        if args.startswith("--from"):
            continue
        *sources, destination = args.split()
        copies.extend((source, destination) for source in sources)
    return copies


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def image(request) -> tuple[str, list[Stage]]:
    return request.param, parse_dockerfile(DOCKERFILES[request.param].read_text())


def test_multi_stage_slim_and_non_root(image):
    kind, stages = image
    assert len(stages) >= 2, f"{kind}: expected a multi-stage build"
    assert all(stage.base == "python:3.11-slim" for stage in stages), [s.base for s in stages]
    runtime = stages[-1]
    # Only built artefacts reach the runtime stage, never the source tree.
    assert local_copies(runtime) == [], f"{kind}: runtime stage copies from the build context"
    assert any(args.startswith("--from=") for args in instructions(runtime, "COPY"))
    users = instructions(runtime, "USER")
    assert users, f"{kind}: runtime stage has no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{kind}: USER {users[-1]!r} must be a numeric non-root uid"
    # Numeric so that Kubernetes can verify runAsNonRoot without an /etc/passwd lookup.
    assert int(uid) in (1000, 65532)


def test_entrypoint_is_exec_form_console_script(image):
    kind, stages = image
    entrypoints = instructions(stages[-1], "ENTRYPOINT")
    assert len(entrypoints) == 1
    assert json.loads(entrypoints[0]) == [EXPECTED_ENTRYPOINT[kind]]


def test_build_context_files_exist_and_are_not_dockerignored(image):
    kind, stages = image
    patterns = dockerignore_patterns()
    copies = [copy for stage in stages for copy in local_copies(stage)]
    assert copies, f"{kind}: nothing copied from the build context"
    for source, _ in copies:
        assert (REPO / source).exists(), f"{kind}: COPY {source}: no such file in the repo"
        assert not ignored(source, patterns), f"{kind}: COPY {source} is excluded by .dockerignore"


@pytest.fixture(scope="module")
def clean_install(tmp_path_factory) -> dict:
    """The wheel built from exactly what the Dockerfiles copy, installed into a fresh venv."""
    root = tmp_path_factory.mktemp("image")
    context = root / "context"
    stages = parse_dockerfile(DOCKERFILES["operator"].read_text())
    wheel_stage = stages[0]
    # Both Dockerfiles build the same wheel from the same files.
    assert local_copies(wheel_stage) == local_copies(parse_dockerfile(DOCKERFILES["sidecar"].read_text())[0])
    for source, destination in local_copies(wheel_stage):
        # Relative to WORKDIR; "dir/" means "into dir", as in Docker.
        target = context / destination
        if destination.endswith("/"):
            target = target / Path(source).name
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / source, target)
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(wheels), "."],
        cwd=context,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # The test venv's pip installs into the fresh venv (no network, no dependencies).
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points_name,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(entry_points_name).decode())
    return {"venv": venv, "names": names, "scripts": dict(parser["console_scripts"])}


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_entrypoint_exists_in_clean_install(clean_install, kind):
    script = EXPECTED_ENTRYPOINT[kind]
    assert script in clean_install["scripts"], clean_install["scripts"]
    installed = clean_install["venv"] / "bin" / script
    assert installed.is_file(), f"{script} not installed into the fresh venv"
    # The script's target module must be in the wheel, or the image would die on start.
    module, _, function = clean_install["scripts"][script].partition(":")
    assert f"from {module} import {function}" in installed.read_text()
    module_file = module.replace(".", "/") + ".py"
    assert module_file in clean_install["names"], f"{script} -> {module}: {module_file} is not in the wheel"
    site_packages = next(clean_install["venv"].glob("lib/python*/site-packages"))
    assert f"def {function}(" in (site_packages / module_file).read_text()


def test_every_declared_console_script_has_its_module_in_the_wheel(clean_install):
    # The image's wheel declares all the distribution's scripts; one whose package was not copied
    # in would be an installed command that dies with ModuleNotFoundError.
    for script, target in clean_install["scripts"].items():
        module_file = target.partition(":")[0].replace(".", "/") + ".py"
        assert module_file in clean_install["names"], f"{script} -> {target}: not in the image's wheel"


def test_wheel_carries_every_module_of_every_package(clean_install):
    # A sub-package without __init__.py is silently left out by setuptools' find_packages, and the
    # image would fail only when that code path is first imported.
    expected = {
        str(path.relative_to(root))
        for root in (REPO / "sidecar", REPO / "operator", REPO / "local")
        for path in root.glob("mcp_*/**/*.py")
    }
    missing = sorted(expected - set(clean_install["names"]))
    assert missing == [], f"not in the wheel: {missing}"
