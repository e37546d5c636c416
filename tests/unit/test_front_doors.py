"""One front door per service: each service's ``cli.make_app`` is what its console script runs
and what ``metalcast`` mounts, so both parse the same arguments. No servers: the composition
roots are replaced by fakes where a command runs."""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import typer
from typer.core import TyperGroup
from typer.main import get_command
from typer.testing import CliRunner, Result

from metalcast.cli import app as umbrella

runner = CliRunner()

# `metalcast <name>` mounts the app that `python -m <module>` runs (attribute `app`).
SERVICES = {
    "ingest": "metalcast_ingestor.__main__",
    "sink": "metalcast_sink.__main__",
    "train": "metalcast_trainer.__main__",
    "api": "metalcast_api.__main__",
    "backup": "metalcast_backup.__main__",
    "watch": "metalcast_watch.__main__",
    "bulk": "metalcast_bulk.__main__",
}
OWN_COMMANDS = {"stack", "demo", "migrate"}  # the local stack's, defined in metalcast.cli
# Added by Typer to a console script's own app only.
COMPLETION = {"install_completion", "show_completion"}


def _root() -> TyperGroup:
    root = get_command(umbrella)
    assert isinstance(root, TyperGroup)
    return root


def _shape(command: Any) -> dict[str, Any]:
    """What a command line can say to ``command``: its parameters (names, flags, defaults,
    metavars) and, for a group, the same of every subcommand."""
    params = sorted(
        (
            p.name or "",
            tuple(p.opts),
            tuple(p.secondary_opts),
            repr(p.default),
            p.multiple,
            p.required,
            p.nargs,
            p.metavar,
        )
        for p in command.params
        if p.name not in COMPLETION
    )
    subcommands = (
        {name: _shape(sub) for name, sub in command.commands.items()}
        if isinstance(command, TyperGroup)
        else {}
    )
    return {"params": params, "commands": subcommands}


def _normalised(output: str) -> str:
    """Help and error text without rich's boxes and line wrapping."""
    return " ".join("".join(" " if c in "│╭╮╰╯─" else c for c in output).split())


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_the_umbrella_mounts_the_app_the_service_runs(name: str) -> None:
    own = get_command(importlib.import_module(SERVICES[name]).app)
    mounted = _root().commands[name]
    assert _shape(mounted) == _shape(own)
    assert mounted.help == own.help


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_help_lists_the_same_commands_and_options_both_ways(name: str) -> None:
    own = runner.invoke(importlib.import_module(SERVICES[name]).app, ["--help"])
    mounted = runner.invoke(umbrella, [name, "--help"])
    assert own.exit_code == mounted.exit_code == 0, (own.output, mounted.output)
    words = _normalised(own.output).split()
    for option in ("--install-completion", "--show-completion"):
        if option in words:  # a console script's own; wrapped help text may sit between
            words.remove(option)
    own_options = {w.rstrip(",") for w in words if w.startswith("--")}
    mounted_options = {w.rstrip(",") for w in _normalised(mounted.output).split() if w[:2] == "--"}
    assert own_options == mounted_options


def test_metalcast_is_the_stack_commands_and_the_mounted_service_apps() -> None:
    root = _root()
    names = set(root.commands)
    assert OWN_COMMANDS | set(SERVICES) | {"models"} <= names
    for name in names - OWN_COMMANDS:
        command = root.commands[name]
        # A service's app: a group whose callbacks all live in a service's cli module.
        assert isinstance(command, TyperGroup), name
        callbacks = [command.callback, *(c.callback for c in command.commands.values())]
        modules = {c.__module__ for c in callbacks if c is not None}
        assert modules, name
        assert all(m.startswith("metalcast_") and m.endswith(".cli") for m in modules), modules
    for name in OWN_COMMANDS:
        callback = root.commands[name].callback
        assert callback is None or callback.__module__ == "metalcast.cli", name
    shown = _normalised(runner.invoke(umbrella, ["--help"]).output).split()
    assert names <= set(shown)


def test_the_umbrella_imports_no_service_internals_until_a_command_runs() -> None:
    heavy = [
        "sktime",
        "statsmodels",
        "metalcast_ingestor.bootstrap",
        "metalcast_sink.bootstrap",
        "metalcast_trainer.bootstrap",
        "metalcast_api.__main__",
        "metalcast_ingestor.__main__",
        "metalcast_sink.__main__",
    ]
    code = f"import sys, metalcast.cli; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


# --- the same arguments reach the same code both ways (composition roots faked) ------------


def _both(name: str, args: list[str]) -> tuple[Result, Result]:
    app: typer.Typer = importlib.import_module(SERVICES[name]).app
    return runner.invoke(umbrella, [name, *args]), runner.invoke(app, args)


def test_ingest_backfill_the_same_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    from metalcast_ingestor import bootstrap

    seen: list[tuple[Any, ...]] = []

    async def backfill(
        settings: Any, source: str, start: datetime, end: datetime
    ) -> dict[str, Any]:
        seen.append((settings.ingest.symbols, source, start, end))
        return {"published": 0}

    monkeypatch.setattr(bootstrap, "configure", lambda settings: None)
    monkeypatch.setattr(bootstrap, "backfill", backfill)
    args = ["backfill", "--source", "simulated", "--days", "1", "--to", "2026-01-02T00:00"]
    for result in _both("ingest", [*args, "--symbols", "xau"]):
        assert result.exit_code == 0, result.output
    end = datetime(2026, 1, 2, tzinfo=UTC)
    assert seen == [(["XAU"], "simulated", end - timedelta(days=1), end)] * 2


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--from", "yesterday"], "Invalid value for '--from': 'yesterday' is not an ISO-8601"),
        (["--to", "2026-02-30"], "Invalid value for '--to': '2026-02-30' is not an ISO-8601"),
        (["--from", "2026-01-02", "--to", "2026-01-01"], "Invalid value for '--from':"),
        (["--days", "0", "--to", "2026-01-01"], "Invalid value for '--days':"),
    ],
)
def test_a_bad_instant_or_range_is_a_bad_parameter_both_ways(args: list[str], reason: str) -> None:
    for result in _both("ingest", ["backfill", *args]):
        assert result.exit_code == 2, result.output
        assert reason in _normalised(result.output)


def test_sink_the_same_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    from metalcast_sink import bootstrap
    from metalcast_sink.service import SinkStats

    seen: list[bool] = []

    async def run_sink(settings: Any, stop: Any = None, until_idle: bool = False) -> SinkStats:
        seen.append(until_idle)
        return SinkStats(batches=1)

    monkeypatch.setattr(bootstrap, "run_sink", run_sink)
    for args in ([], ["--until-idle"]):
        for result in _both("sink", args):
            assert result.exit_code == 0, result.output
            stats = json.loads(result.output.strip().splitlines()[-1])
            assert stats == dataclasses.asdict(SinkStats(batches=1))
    assert seen == [False, False, True, True]


def test_api_the_same_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    from metalcast_api import cli
    from metalcast_api.config import ApiSettings

    seen: list[tuple[str, int]] = []

    def serve(settings: ApiSettings) -> None:
        seen.append((settings.api.host, settings.api.port))

    monkeypatch.setattr(cli, "serve", serve)
    for result in _both("api", ["--host", "0.0.0.0", "--port", "9000"]):
        assert result.exit_code == 0, result.output
    assert seen == [("0.0.0.0", 9000)] * 2
    for result in _both("api", ["--port", "70000"]):
        assert result.exit_code == 2
