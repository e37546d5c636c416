"""``metalcast-trainer``: serve (retrain on every batch-loaded event) or train once."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import typer

from metalcast_core import configure_logging, run_until_signal
from metalcast_trainer.bootstrap import run_trainer, train_once
from metalcast_trainer.config import TrainerSettings

cli = typer.Typer(help="Retrain one model per metal when new data lands.")


def _settings() -> TrainerSettings:
    settings = TrainerSettings()
    configure_logging(settings.log_level)
    return settings


@cli.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="Train now on the current window and exit."),
) -> None:
    """Consume pipeline.batch-loaded.v1 and train on every (coalesced) event until stopped."""
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings()
    if once:
        report = asyncio.run(train_once(settings))
        typer.echo(json.dumps(dataclasses.asdict(report), default=str))
        raise typer.Exit(0 if report.status in {"succeeded", "partial"} else 1)

    run_until_signal(lambda stop: run_trainer(settings, stop))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
