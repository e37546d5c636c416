"""Every service's image has what the service imports, proven without a Docker engine.

The one ``Dockerfile`` installs ``metalcast-$SERVICE`` into ``/app/.venv`` with two ``uv sync``
steps (third-party dependencies, then our code) and nothing else: no dev group, no other
workspace member. These tests run exactly those ``uv sync`` commands, read from the Dockerfile,
into a scratch environment, then import every module of the service's package there and run
its console script. A dependency a service uses but its ``pyproject.toml`` does not declare
(it would be present in the workspace's dev environment all the same) fails here.

What this does not prove: the base image, the user and the file layout of the runtime stage;
those need a Docker engine, which this machine and CI do not have.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SERVICES = sorted(p.parent.name for p in ROOT.glob("services/*/pyproject.toml"))


def _uv_syncs(service: str) -> list[list[str]]:
    """The Dockerfile's ``uv sync`` commands, with ``SERVICE`` substituted."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    commands = re.findall(r"(uv sync [^;&\n]*)", text)
    assert len(commands) == 2, f"expected the two uv sync steps, found {commands}"
    return [shlex.split(c.replace("${SERVICE}", service)) for c in commands]


def _scripts(service: str) -> list[str]:
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    return sorted(project["project"].get("scripts", {}))


IMPORT_ALL = """
import importlib, pkgutil, sys
package = importlib.import_module(sys.argv[1])
failed = []
names = [sys.argv[1]]
for module in pkgutil.walk_packages(package.__path__, sys.argv[1] + "."):
    names.append(module.name)
    try:
        importlib.import_module(module.name)
    except Exception as exc:
        failed.append(f"{module.name}: {exc!r}")
print("\\n".join(failed) if failed else f"imported {len(names)} modules")
sys.exit(1 if failed else 0)
"""


@pytest.mark.parametrize("service", SERVICES)
def test_image_steps_install_everything_the_service_imports(service: str, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON": sys.executable,
        "UV_PYTHON_DOWNLOADS": "never",
        # The image copies files (UV_LINK_MODE=copy); links are as good for the check.
        "UV_LINK_MODE": "hardlink",
        "VIRTUAL_ENV": "",
    }
    for command in _uv_syncs(service):
        done = subprocess.run(
            [*command, "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stderr}"

    package = f"metalcast_{service}"
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", IMPORT_ALL, package],
        cwd=tmp_path,  # not the repository: only the installed packages count
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{package} in its image:\n{done.stdout}{done.stderr}"

    scripts = _scripts(service)
    assert scripts, f"metalcast-{service} declares no console script"
    for script in scripts:
        ran = subprocess.run(
            [str(venv / "bin" / script), "--help"],
            cwd=tmp_path,
            env={"PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, f"{script} --help:\n{ran.stdout}{ran.stderr}"
        assert "Usage" in ran.stdout, ran.stdout
