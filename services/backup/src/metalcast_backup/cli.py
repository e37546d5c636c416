"""The ``metalcast-backup`` commands (also ``metalcast backup ...``): run, list, verify, restore.

:func:`make_app` takes the settings factory: ``metalcast-backup`` reads the environment only;
``metalcast backup`` (the local stack's composition root) fills in the stack's pg_dump.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from metalcast_backup.config import BackupSettings
    from metalcast_backup.service import BackupService


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


Source = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="The target to read the backup from: primary or offsite (default: the first "
        "that holds a complete copy).",
    ),
]


def make_app(settings_factory: Callable[[], BackupSettings]) -> typer.Typer:
    app = typer.Typer(
        no_args_is_help=True,
        help="Backups of PostgreSQL and the model files in S3: run, list, verify, restore.",
    )

    def _service() -> BackupService:
        from metalcast_backup.bootstrap import build_service
        from metalcast_core import configure_logging

        settings = settings_factory()
        configure_logging(settings.log_level)
        return build_service(settings)

    @app.command("run")
    def run(
        verify: Annotated[
            bool, typer.Option(help="Verify the new backup, then apply retention.")
        ] = True,
    ) -> None:
        """Back up the whole database and every model file; verify; keep the newest N."""
        from metalcast_backup.errors import BackupError

        service = _service()
        try:
            if verify:
                manifest, verification, plan = asyncio.run(service.run_verify_prune())
            else:
                manifest = asyncio.run(service.run())
        except BackupError as exc:
            typer.secho(str(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from exc
        typer.echo(
            f"backup {manifest.backup_id} complete: {len(manifest.tables)} tables, "
            f"{manifest.total_rows} rows, {len(manifest.models)} model files, "
            f"{_size(manifest.total_bytes)} in {manifest.durations_s.get('total', 0):.1f} s"
        )
        if verify:
            typer.echo(f"verified in {verification.duration_s:.1f} s ({verification.status})")
            typer.echo(f"retention: {plan.reason}; deleted {len(plan.delete)}")
            for backup_id in plan.delete:
                typer.echo(f"  deleted {backup_id}")

    @app.command("list")
    def list_() -> None:
        """The backups in S3, oldest first."""
        service = _service()
        manifests = asyncio.run(service.list())
        holders = asyncio.run(service.holders())
        typer.echo(
            f"{'id':<24} {'status':<9} {'verify':<7} {'rows':>10} {'models':>6} "
            f"{'size':>10} {'seconds':>8}  {'on':<16} key"
        )
        for m in manifests:
            verify = m.verification.status if m.verification else "-"
            on = ",".join(holders.get(m.backup_id, []))
            key = m.encryption.key_id if m.encryption else "-"
            typer.echo(
                f"{m.backup_id:<24} {m.status:<9} {verify:<7} {m.total_rows:>10} "
                f"{len(m.models):>6} {_size(m.total_bytes):>10} "
                f"{m.durations_s.get('total', 0):>8.1f}  {on:<16} {key}"
                + (f"  {m.error}" if m.error else "")
            )

    @app.command("verify")
    def verify_(backup_id: str, source: Source = None) -> None:
        """Restore into a scratch database, compare row counts and model sha256s, drop it;
        check every other target holds the same bytes (with --source: that copy alone)."""
        from metalcast_backup.errors import BackupError
        from metalcast_backup.verify import verification_message

        service = _service()
        try:
            v = asyncio.run(service.verify(backup_id, source))
        except BackupError as exc:
            typer.secho(str(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from exc
        if v.status != "passed":
            typer.secho(verification_message(backup_id, v), fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        typer.echo(
            f"backup {backup_id} verified in {v.duration_s:.1f} s: {v.tables_checked} tables "
            f"match, {v.models_checked} model files match (scratch database "
            f"{v.scratch_database} dropped)"
        )

    @app.command("restore")
    def restore(
        backup_id: str,
        into: Annotated[str, typer.Option("--into", help="Database to restore into.")],
        force: Annotated[
            bool, typer.Option(help="Replace an existing database (needed for the live one).")
        ] = False,
        models: Annotated[
            bool | None,
            typer.Option(
                help="Put the model files back in the models bucket (default: only when "
                "restoring the live database; never for another one)."
            ),
        ] = None,
        accept_loss: Annotated[
            bool,
            typer.Option(
                help="Restore the live database even though Kafka no longer holds messages "
                "the sink would need to re-read (they are named first)."
            ),
        ] = False,
        source: Source = None,
    ) -> None:
        """Restore a backup into a database (and, with the live one, the model files).

        Checks first what Kafka still holds: after the restore the sink re-reads everything
        published since the backup; what retention has deleted is named, and refused unless
        --accept-loss."""
        from metalcast_backup.errors import BackupError

        service = _service()
        try:
            report = asyncio.run(
                service.restore(
                    backup_id,
                    into,
                    force=force,
                    models=models,
                    accept_loss=accept_loss,
                    source=source,
                )
            )
        except BackupError as exc:
            typer.secho(str(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from exc
        for line in report.lines():
            typer.echo(line)
        if report.problems:
            raise typer.Exit(1)

    @app.command("new-key")
    def new_key() -> None:
        """Print a new random encryption key (for METALCAST_BACKUP__ENCRYPTION_KEY)."""
        from metalcast_backup.crypto import key_id, new_key, parse_key

        key = new_key()
        typer.echo(key)
        typer.echo(f"key id {key_id(parse_key(key))}", err=True)

    return app
