"""The mesh's Dockerfile, checked without a Docker engine (none runs here): hadolint lints it,
BuildKit's own parser (the `dockerfile` package) reads it, and what the image runs agrees with
the manifests: uid, command, port, and the locustfile path the Locust manifests use."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import dockerfile
import pytest
import yaml

from mesh.deploy.sync import DEPLOY_DIR, REPO_ROOT

DOCKERFILE = DEPLOY_DIR / "Dockerfile"
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or "hadolint"


def _stages() -> list[list[dockerfile.Command]]:
    stages: list[list[dockerfile.Command]] = []
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(command)
    return stages


def _final(cmd: str) -> list[tuple[str, ...]]:
    return [c.value for c in _stages()[-1] if c.cmd == cmd]


def _yaml(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _mesh_pod() -> dict[str, Any]:
    (deployment,) = _yaml(DEPLOY_DIR / "base" / "deployment.yaml")
    return dict(deployment["spec"]["template"]["spec"])


def test_hadolint_finds_nothing_to_fix() -> None:
    done = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_catch_a_careless_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install meshsre\nUSER root\n")
    done = subprocess.run([HADOLINT, str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # the latest tag


def test_the_image_is_built_in_one_stage_and_run_from_another() -> None:
    stages = _stages()
    assert len(stages) >= 2
    copies = [c for c in stages[-1] if c.cmd == "COPY" and "--from=build" in c.flags]
    assert [c.value for c in copies] == [("/opt/venv", "/opt/venv")]
    # Nothing is installed in the runtime stage: no pip, no compilers.
    assert not any("pip" in " ".join(c.value) for c in stages[-1] if c.cmd == "RUN")


def test_the_image_runs_as_the_non_root_uid_the_pods_require() -> None:
    (user,) = _final("USER")
    uid, gid = (int(part) for part in user[0].split(":"))
    assert uid != 0 and gid != 0
    pod = _mesh_pod()
    container = pod["containers"][0]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
        uid, gid)
    assert container["securityContext"]["runAsUser"] == uid
    (useradd,) = [c.value[0] for c in _stages()[-1] if c.cmd == "RUN"]
    assert f"--uid {uid}" in useradd and f"--gid {gid}" in useradd


def test_the_image_serves_on_the_port_the_probes_use() -> None:
    (entrypoint,) = _final("ENTRYPOINT")
    (cmd,) = _final("CMD")
    (exposed,) = _final("EXPOSE")
    container = _mesh_pod()["containers"][0]
    assert entrypoint == ("meshsre",) and "command" not in container
    assert list(cmd) == container["args"]
    port = int(cmd[cmd.index("--port") + 1])
    assert port == int(exposed[0]) == container["ports"][0]["containerPort"]


def test_the_locust_manifests_use_the_locustfile_the_image_carries() -> None:
    copies = {c.value[0]: c.value[1] for c in _stages()[-1]
              if c.cmd == "COPY" and not c.flags}
    kustomization = yaml.safe_load((REPO_ROOT / "loadtests" / "k8s" / "kustomization.yaml")
                                   .read_text())
    literals = dict(line.split("=", 1)
                    for line in kustomization["configMapGenerator"][0]["literals"])
    assert copies["loadtests/locustfile.py"] == literals["LOCUST_LOCUSTFILE"]
    assert (REPO_ROOT / "loadtests" / "locustfile.py").is_file()


@pytest.mark.parametrize("needed", ["pyproject.toml", "README.md", "loadtests/locustfile.py"])
def test_the_build_context_keeps_what_the_build_needs(needed: str) -> None:
    kept = _context_allowlist()
    assert needed.split("/")[0] in kept


def test_the_build_context_keeps_every_package_pip_installs() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]
                ["include"]}
    assert packages <= _context_allowlist()


def _context_allowlist() -> set[str]:
    """Top-level names the .dockerignore lets into the context (it ignores `*` first)."""
    lines = [line.strip() for line in (DEPLOY_DIR / "Dockerfile.dockerignore").read_text()
             .splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    return {line[1:] for line in lines if line.startswith("!")}
