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
# Each service's own credentials, set per service (never in x-metalcast-env).
CREDENTIALS = (
    "METALCAST_POSTGRES__URL",
    "METALCAST_S3__ACCESS_KEY_ID",
    "METALCAST_S3__SECRET_ACCESS_KEY",
)
# Sections of ServiceSettings that say where the infrastructure is.
CONNECTION_SECTIONS = ("postgres", "kafka", "s3")
# The documented exception: Airflow's services (built from airflow/Dockerfile) run Airflow's
# CLI through the image's entrypoint, not one of our console scripts; their tasks run
# metalcast_backup, metalcast_watch and metalcast_ingestor (the macro pull), so their
# METALCAST_* names must be fields of the settings of one of them.
AIRFLOW_DOCKERFILE = ROOT / "airflow" / "Dockerfile"
AIRFLOW_COMMANDS = {"api-server", "scheduler", "dag-processor", "triggerer"}
AIRFLOW_TASKS_PACKAGES = ("metalcast_backup", "metalcast_watch", "metalcast_ingestor")


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


def _build_args(service: dict[str, Any]) -> dict[str, str]:
    build = service["build"]
    args = build.get("args", {}) if isinstance(build, dict) else {}
    if isinstance(args, list):
        return dict(item.split("=", 1) for item in args)
    return {k: str(v) for k, v in args.items()}


@pytest.mark.parametrize("name", OURS)
def test_everything_the_dockerfile_copies_exists(name: str) -> None:
    dockerfile = _dockerfile(SERVICES[name])
    args = _build_args(SERVICES[name])
    for line in dockerfile.read_text().splitlines():
        if not line.startswith("COPY "):
            continue
        for arg, value in args.items():
            line = line.replace(f"${{{arg}}}", value)
        words = shlex.split(line)
        if any(w.startswith("--from=") for w in words):
            continue
        sources = [w for w in words[1:] if not w.startswith("--")][:-1]
        for source in sources:
            if source.rstrip("/") in ("", "."):
                continue  # the whole context
            assert list(ROOT.glob(source)), f"{dockerfile.name} copies missing {source}"


SERVICE_DOCKERFILE = ROOT / "Dockerfile"


def test_our_services_share_one_parametrised_dockerfile() -> None:
    services = [n for n in OURS if not _is_airflow(n)]
    assert services
    for name in services:
        assert _dockerfile(SERVICES[name]) == SERVICE_DOCKERFILE, name
    assert sorted(ROOT.glob("services/*/Dockerfile")) == [], "one Dockerfile for the services"


@pytest.mark.parametrize("name", [n for n in OURS if not n.startswith("airflow")])
def test_service_image_installs_the_package_whose_script_it_runs(name: str) -> None:
    service = SERVICES[name]
    if _is_airflow(name):
        return
    folder = _build_args(service).get("SERVICE")
    assert folder, f"{name}: build.args.SERVICE names its folder under services/"
    pyproject = ROOT / "services" / folder / "pyproject.toml"
    assert pyproject.is_file(), f"{name}: services/{folder} has no pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"]
    assert project["name"] == f"metalcast-{folder}"
    # The command is the package's own script, or one of a workspace library it depends on.
    command = _command(service)[0]
    declared = set(project.get("scripts", {}))
    for dependency in project.get("dependencies", []):
        lib = ROOT / "libs" / dependency / "pyproject.toml"
        if lib.is_file():
            declared |= set(tomllib.loads(lib.read_text())["project"].get("scripts", {}))
    assert command in declared, f"{name} runs {command!r}; metalcast-{folder} has {declared}"


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


def _settings_classes(name: str) -> tuple[list[type[ServiceSettings]], str | None]:
    """The settings classes of the service's packages (Airflow's: each task package's)."""
    if _is_airflow(name):
        found = [_package_settings(p) for p in AIRFLOW_TASKS_PACKAGES]
        why_not = next((why for _, why in found if why is not None), None)
        return [cls for cls, _ in found], why_not
    settings, why_not = _settings_class(name)
    return [settings], why_not


def _settings_class(name: str) -> tuple[type[ServiceSettings], str | None]:
    """The settings class of the service's package, or ServiceSettings and why not."""
    script = _command(SERVICES[name])[0]
    entry = _console_scripts().get(script)
    if entry is None:
        return ServiceSettings, f"{script} is not a declared console script"
    return _package_settings(entry.partition(":")[0].partition(".")[0])


def _package_settings(package: str) -> tuple[type[ServiceSettings], str | None]:
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
    classes, why_not = _settings_classes(name)
    core = set(ServiceSettings.model_fields)
    unknown, unchecked = [], []
    for env_name in sorted(_metalcast_names(name)):
        path = env_name.removeprefix("METALCAST_").lower().split("__")
        if any(_has_setting(settings, path) for settings in classes):
            continue
        if _is_airflow(name) and path[0] == "bulk":  # the market_data_bulk DAG's tasks
            from metalcast_bulk.config import BulkSettings

            if _has_setting(BulkSettings, path):
                continue
        if why_not is not None and path[0] not in core:
            unchecked.append(env_name)  # a section of the service's own settings
        else:
            unknown.append(env_name)
    names = ", ".join(c.__name__ for c in classes)
    assert not unknown, f"{name}: no settings field for {unknown} in {names}"
    if unchecked:
        pytest.skip(f"{name}: {unchecked} not checked: {why_not}")


def test_local_stack_and_compose_use_the_same_setting_names() -> None:
    try:
        from metalcast.stack import env as stack_env
    except ImportError as exc:
        pytest.skip(f"metalcast.stack.env is not importable: {exc}")
    stack = {n for n in stack_env() if n.startswith("METALCAST_")}
    # Credentials are per service in compose (each its own user), all in the stack's env; the
    # backup service's own settings (its off-box target) go to the services that run backups
    # (Airflow's tasks), not to every service.
    backups = set().union(*(set(_environment(SERVICES[n])) for n in OURS if _is_airflow(n)))
    own = {n for n in stack - set(COMMON_ENV) if n.startswith("METALCAST_BACKUP__")}
    assert own - backups == set(), "the local stack sets these; compose's backup tasks do not"
    assert stack - set(COMMON_ENV) - own == set(CREDENTIALS), (
        "the local stack sets these; compose.yaml does not"
    )

    def connection(names: set[str]) -> set[str]:
        return {
            n
            for n in names
            if n.removeprefix("METALCAST_").split("__")[0].lower() in CONNECTION_SECTIONS
        }

    assert connection(set(COMMON_ENV) | set(CREDENTIALS)) == connection(stack)


# The workers' doors: each serves /metrics and /healthz on its METRICS_PORT; the healthcheck
# and the watch's URL must ask that very port.
WORKERS = {"sink": "SINK", "trainer": "TRAINER", "ingestor": "INGEST"}


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_worker_healthcheck_and_the_watch_ask_its_healthz_port(name: str) -> None:
    env = _environment(SERVICES[name])
    section = WORKERS[name]
    port = int(env[f"METALCAST_{section}__METRICS_PORT"])
    assert port != 0
    assert env[f"METALCAST_{section}__METRICS_HOST"] == "0.0.0.0"  # reachable from the watch
    healthcheck = " ".join(SERVICES[name]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/healthz" in healthcheck
    airflow_env = COMPOSE["x-airflow-common"]["environment"]
    assert airflow_env[f"METALCAST_WATCH__{name.upper()}_HEALTH_URL"] == (
        f"http://{name}:{port}/healthz"
    )


# --- least privilege ------------------------------------------------------------------------


# Spark's master and worker run from the bulk image but are Spark, not the bulk service.
SPARK_DAEMONS = ("spark-master", "spark-worker")


def _url_user(url: str) -> str:
    return url.split("://", 1)[1].split(":", 1)[0]


def test_no_credentials_are_shared_by_every_service() -> None:
    assert set(COMMON_ENV) & set(CREDENTIALS) == set()


@pytest.mark.parametrize("name", OURS)
def test_each_service_logs_in_as_its_own_postgres_user(name: str) -> None:
    """Only the migrate job is the database owner; Airflow's tasks share one user."""
    if name in SPARK_DAEMONS:
        env = _environment(SERVICES[name])
        assert not set(env) & set(CREDENTIALS), f"{name} needs no credentials"
        return
    url = _environment(SERVICES[name]).get("METALCAST_POSTGRES__URL")
    settings, _ = _settings_class(name)
    if url is None:
        assert "postgres" not in settings.connects_to, f"{name} connects to PostgreSQL"
        return
    # A service built from another's package (sink-bars, sink-macro: the sink's bar and macro
    # loops) is that unit.
    unit = "airflow" if _is_airflow(name) else _build_args(SERVICES[name]).get("SERVICE", name)
    expected = "metalcast" if name == "migrate" else f"metalcast_{unit}_login"
    assert _url_user(url) == expected
    if name != "migrate":
        # The migrate job creates that user with the same password.
        password = re.search(r"\$\{(\w+):\?", url)
        assert password is not None
        migrate_env = _environment(SERVICES["migrate"])
        assert (
            f"${{{password.group(1)}:?" in migrate_env[f"METALCAST_LOGINS__{unit.upper()}_PASSWORD"]
        )


@pytest.mark.parametrize("name", OURS)
def test_each_service_uses_its_own_s3_identity(name: str) -> None:
    from metalcast.stack.s3_identities import identity

    if name in SPARK_DAEMONS:
        return  # no credentials at all (the test above)
    env = _environment(SERVICES[name])
    key = env.get("METALCAST_S3__ACCESS_KEY_ID")
    settings, _ = _settings_class(name)
    if key is None:
        assert name == "migrate" or "s3" not in settings.connects_to, f"{name} uses S3"
        return
    unit = "backup" if _is_airflow(name) else name
    assert key == identity(unit).access_key
    assert "MINIO_ROOT" not in str(env["METALCAST_S3__SECRET_ACCESS_KEY"])
    minio_init = _environment(SERVICES["minio-init"])
    secret = re.search(r"\$\{(\w+):\?", str(env["METALCAST_S3__SECRET_ACCESS_KEY"]))
    assert secret is not None
    assert secret.group(1) in minio_init


def test_the_bulk_dag_s_tasks_use_the_bulk_identity_not_the_backup_s() -> None:
    """Airflow's workers carry the backup's key pair (METALCAST_S3__*) and the bulk work's own
    (METALCAST_BULK__S3_*), which the bulk settings put in its S3 section."""
    from metalcast.stack.s3_identities import identity
    from metalcast_bulk.config import BulkSettings

    env = COMPOSE["x-airflow-common"]["environment"]
    assert env["METALCAST_S3__ACCESS_KEY_ID"] == identity("backup").access_key
    assert env["METALCAST_BULK__S3_ACCESS_KEY_ID"] == identity("bulk").access_key
    secret = re.search(r"\$\{(\w+):\?", str(env["METALCAST_BULK__S3_SECRET_ACCESS_KEY"]))
    assert secret is not None
    assert secret.group(1) == "BULK_S3_SECRET"
    assert secret.group(1) in _environment(SERVICES["minio-init"])
    # The bucket compose points the DAG at is the one the bulk policy names.
    for name in ("METALCAST_BULK__INPUT_URL", "METALCAST_BULK__DATA_URL"):
        assert ":-s3://metalcast-bulk/" in env[name]
    settings = BulkSettings.model_validate(
        {
            "environment": "test",
            "s3": {"access_key_id": "metalcast-backup", "secret_access_key": "backup-secret"},
            "bulk": {"s3_access_key_id": "metalcast-bulk", "s3_secret_access_key": "bulk-secret"},
        }
    )
    assert settings.s3.access_key_id.get_secret_value() == "metalcast-bulk"
    assert settings.s3.secret_access_key.get_secret_value() == "bulk-secret"
    with pytest.raises(ValueError, match="set both or neither"):
        BulkSettings.model_validate({"bulk": {"s3_access_key_id": "metalcast-bulk"}})


def test_minio_init_makes_the_identities_the_stack_makes() -> None:
    """The policies compose mounts are the ones metalcast.stack.s3_identities makes locally,
    for compose's bucket names; the minio-init loop makes a user for each of them."""
    from metalcast.stack.s3_identities import IDENTITIES, policy_json
    from metalcast_core import S3Settings

    s3 = S3Settings(
        models_bucket=COMMON_ENV["METALCAST_S3__MODELS_BUCKET"],
        backups_bucket=COMMON_ENV["METALCAST_S3__BACKUPS_BUCKET"],
    )
    folder = ROOT / "infra" / "minio" / "policies"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"metalcast-{i.service}.json" for i in IDENTITIES
    )
    for ident in IDENTITIES:
        stored = json.loads((folder / f"metalcast-{ident.service}.json").read_text())
        assert stored == json.loads(policy_json(ident, s3)), ident.service
    script = "\n".join(_command(SERVICES["minio-init"]))
    loop = re.search(r"for service in ([a-z ]+); do", script)
    assert loop is not None
    assert loop.group(1).split() == [i.service for i in IDENTITIES]


def _airflow_check_script() -> str:
    script = "\n".join(_command(SERVICES["airflow-init"]))
    first = re.search(r"python - <<'PY'\n(.*?)\nPY\n", script, re.S)
    assert first is not None
    return first.group(1)


def test_airflow_init_refuses_placeholder_secrets_in_production(tmp_path: Path) -> None:
    import subprocess
    import sys

    real = {
        "METALCAST_ENVIRONMENT": "production",
        "AIRFLOW_ADMIN_PASSWORD": "a-real-admin-password",
        "AIRFLOW__CORE__FERNET_KEY": "a-real-fernet-key",
        "AIRFLOW__API_AUTH__JWT_SECRET": "a-real-jwt-secret",
        "AIRFLOW__API__SECRET_KEY": "a-real-secret-key",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://m:a-real-pw@db/airflow",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "auth" / "p.json"),
    }
    script = _airflow_check_script()

    def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
        )

    for name, value in (
        ("AIRFLOW_ADMIN_PASSWORD", "admin"),
        ("AIRFLOW__CORE__FERNET_KEY", "changethis"),
        ("AIRFLOW__API_AUTH__JWT_SECRET", ""),
        ("AIRFLOW__API__SECRET_KEY", "changethis"),
    ):
        refused = run({**real, name: value})
        assert refused.returncode != 0
        assert name in refused.stderr
        assert not (tmp_path / "auth" / "p.json").exists()
    no_password = run(
        {**real, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://m@db/airflow"}
    )
    assert "SQL_ALCHEMY_CONN (password)" in no_password.stderr
    ok = run(real)
    assert ok.returncode == 0, ok.stderr
    written = json.loads((tmp_path / "auth" / "p.json").read_text())
    assert written == {"admin": "a-real-admin-password"}
    # Locally (METALCAST_ENVIRONMENT=local) placeholders pass.
    assert (
        run(
            {**real, "METALCAST_ENVIRONMENT": "local", "AIRFLOW_ADMIN_PASSWORD": "admin"}
        ).returncode
        == 0
    )
