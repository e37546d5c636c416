"""compose.yaml is a valid Compose file, and it agrees with the code it runs.

tests/fixtures/compose-spec.json is the Compose Specification's JSON Schema, vendored verbatim
from github.com/compose-spec/compose-spec, file schema/compose-spec.json at commit
00655e2222608fa6eaecdf12ac5195889ca2244a (74,133 characters). To update it, replace the file
with a newer version of that one and change the commit here.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from pydantic import BaseModel

from metalcast_core import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
COMPOSE_SPEC = ROOT / "tests" / "fixtures" / "compose-spec.json"
ENV_EXAMPLE = ROOT / ".env.example"

COMPOSE_TEXT = COMPOSE_FILE.read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
# Ours are the services built from this repository; the rest run upstream images.
OURS = sorted(name for name, service in SERVICES.items() if "build" in service)
# The settings every one of our services gets (the `x-metalcast-env` anchor).
COMMON_ENV: dict[str, Any] = COMPOSE["x-metalcast-env"]
# Sections of ServiceSettings that say where the infrastructure is.
CONNECTION_SECTIONS = ("postgres", "kafka", "s3")
# The documented exception: Airflow's services (built from airflow/Dockerfile) run Airflow's
# CLI through the image's entrypoint, not one of our console scripts; their tasks run
# metalcast_backup, so their METALCAST_* names must be fields of its settings.
AIRFLOW_DOCKERFILE = ROOT / "airflow" / "Dockerfile"
AIRFLOW_COMMANDS = {"api-server", "scheduler", "dag-processor", "triggerer"}
AIRFLOW_TASKS_PACKAGE = "metalcast_backup"


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else list(command)


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def _workspace_pyprojects() -> list[Path]:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = root["tool"]["uv"]["workspace"]["members"]
    found = [ROOT / "pyproject.toml"]
    for pattern in members:
        found += sorted(p / "pyproject.toml" for p in ROOT.glob(pattern))
    return [p for p in found if p.is_file()]


def _console_scripts() -> dict[str, str]:
    scripts: dict[str, str] = {}
    for path in _workspace_pyprojects():
        project = tomllib.loads(path.read_text()).get("project", {})
        scripts.update(project.get("scripts", {}))
    return scripts


def _dockerfile(service: dict[str, Any]) -> Path:
    build = service["build"]
    if isinstance(build, str):
        return ROOT / build / "Dockerfile"
    context: str = build.get("context", ".")
    dockerfile: str = build.get("dockerfile", "Dockerfile")
    return ROOT / context / dockerfile


# --- the file itself --------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SPEC.read_text())
    Draft7Validator.check_schema(schema)
    errors = sorted(Draft7Validator(schema).iter_errors(COMPOSE), key=lambda e: list(e.path))
    assert not errors, "\n".join(
        f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors
    )


def test_compose_file_has_no_obsolete_version_key() -> None:
    assert "version" not in COMPOSE


def test_upstream_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag, f"{name}: pin a version of {image}"
        assert tag != "latest", f"{name}: pin a version of {image}"


def test_dependencies_exist_and_wait_for_health_only_where_there_is_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        for target, condition in _depends_on(service).items():
            assert target in SERVICES, f"{name} depends on unknown service {target!r}"
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], (
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck"
                )


def test_required_secrets_are_demanded_not_defaulted() -> None:
    for secret in ("POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        uses = re.findall(rf"\$\{{{secret}([^}}]*)\}}", COMPOSE_TEXT)
        assert uses, f"{secret} is not used"
        assert all(use.startswith(":?") for use in uses), f"use ${{{secret}:?message}}"


def test_every_variable_compose_reads_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    # ${VAR...} interpolations (not $$VAR, which the container's shell expands) ...
    read = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", COMPOSE_TEXT))
    # ... and variables passed through from .env or the shell (no value in compose.yaml).
    for service in SERVICES.values():
        read |= {k for k, v in _environment(service).items() if v is None}
    assert read - documented == set(), "add these to .env.example"


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OURS)
def test_image_is_built_from_the_repo_root_with_an_existing_dockerfile(name: str) -> None:
    build = SERVICES[name]["build"]
    assert isinstance(build, dict)
    assert build.get("context") == ".", "build from the repository root"
    dockerfile = _dockerfile(SERVICES[name])
    assert dockerfile.is_file(), f"{dockerfile.relative_to(ROOT)} does not exist"


@pytest.mark.parametrize("name", OURS)
def test_everything_the_dockerfile_copies_exists(name: str) -> None:
    dockerfile = _dockerfile(SERVICES[name])
    for line in dockerfile.read_text().splitlines():
        if not line.startswith("COPY "):
            continue
        words = shlex.split(line)
        if any(w.startswith("--from=") for w in words):
            continue
        sources = [w for w in words[1:] if not w.startswith("--")][:-1]
        for source in sources:
            assert list(ROOT.glob(source)), f"{dockerfile.name} copies missing {source}"


def _is_airflow(name: str) -> bool:
    return _dockerfile(SERVICES[name]) == AIRFLOW_DOCKERFILE


@pytest.mark.parametrize("name", OURS)
def test_command_is_a_declared_console_script(name: str) -> None:
    command = _command(SERVICES[name])
    assert command, f"{name} has no command"
    if _is_airflow(name):
        # An Airflow component, or the init job's script (it has its own entrypoint).
        assert command[0] in AIRFLOW_COMMANDS or "entrypoint" in SERVICES[name], name
        return
    scripts = _console_scripts()
    assert command[0] in scripts, (
        f"{name} runs {command[0]!r}, which no workspace pyproject.toml declares in "
        f"[project.scripts] (declared: {sorted(scripts)})"
    )


# --- settings -------------------------------------------------------------------------------


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        model = _model_in(arg)
        if model is not None:
            return model
    return None


def _has_setting(model: type[BaseModel], path: list[str]) -> bool:
    """Whether ``model`` has the (nested) field ``path``; names are case-insensitive."""
    fields = {name.lower(): field for name, field in model.model_fields.items()}
    field = fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    nested = _model_in(field.annotation)
    return nested is not None and _has_setting(nested, path[1:])


def _settings_class(name: str) -> tuple[type[ServiceSettings], str | None]:
    """The settings class of the service's package, or ServiceSettings and why not."""
    script = _command(SERVICES[name])[0]
    entry = _console_scripts().get(script)
    if _is_airflow(name):
        package = AIRFLOW_TASKS_PACKAGE
    elif entry is None:
        return ServiceSettings, f"{script} is not a declared console script"
    else:
        package = entry.partition(":")[0].partition(".")[0]
    try:
        module = importlib.import_module(f"{package}.config")
    except ImportError as exc:
        return ServiceSettings, f"{package}.config cannot be imported ({exc})"
    classes = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, ServiceSettings) and obj is not ServiceSettings
    ]
    if len(classes) != 1:
        return ServiceSettings, f"{package}.config defines {len(classes)} ServiceSettings classes"
    return classes[0], None


def _metalcast_names(name: str) -> set[str]:
    names = {n for n in _environment(SERVICES[name]) if n.startswith("METALCAST_")}
    dockerfile = _dockerfile(SERVICES[name]).read_text()
    return names | set(re.findall(r"\bMETALCAST_[A-Z0-9_]+", dockerfile))


@pytest.mark.parametrize("name", OURS)
def test_service_gets_the_common_settings(name: str) -> None:
    assert set(COMMON_ENV) <= set(_environment(SERVICES[name]))


@pytest.mark.parametrize("name", OURS)
def test_environment_names_are_fields_of_the_service_settings(name: str) -> None:
    settings, why_not = _settings_class(name)
    core = set(ServiceSettings.model_fields)
    unknown, unchecked = [], []
    for env_name in sorted(_metalcast_names(name)):
        path = env_name.removeprefix("METALCAST_").lower().split("__")
        if _has_setting(settings, path):
            continue
        if _is_airflow(name) and path[0] == "bulk":  # the market_data_bulk DAG's tasks
            from metalcast_bulk.config import BulkSettings

            if _has_setting(BulkSettings, path):
                continue
        if why_not is not None and path[0] not in core:
            unchecked.append(env_name)  # a section of the service's own settings
        else:
            unknown.append(env_name)
    assert not unknown, f"{name}: no settings field for {unknown} in {settings.__name__}"
    if unchecked:
        pytest.skip(f"{name}: {unchecked} not checked: {why_not}")


def test_local_stack_and_compose_use_the_same_setting_names() -> None:
    try:
        from metalcast.stack import env as stack_env
    except ImportError as exc:
        pytest.skip(f"metalcast.stack.env is not importable: {exc}")
    stack = {n for n in stack_env() if n.startswith("METALCAST_")}
    assert stack - set(COMMON_ENV) == set(), "the local stack sets these; compose.yaml does not"

    def connection(names: set[str]) -> set[str]:
        return {
            n
            for n in names
            if n.removeprefix("METALCAST_").split("__")[0].lower() in CONNECTION_SECTIONS
        }

    assert connection(set(COMMON_ENV)) == connection(stack)
