"""The ``metalcast-bulk`` commands (also ``metalcast bulk ...``): ingest, publish, features,
train, report.

:func:`make_app` takes the settings factory; options given on the command line override
the ``METALCAST_BULK__*`` settings for that run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from metalcast_bulk.config import BulkSettings
    from metalcast_bulk.service import BulkService

Engine = Annotated[
    str | None,
    typer.Option("--engine", help="polars (default, embedded) or spark (needs --spark-master)."),
]
SparkMaster = Annotated[
    str | None,
    typer.Option("--spark-master", help="Spark master URL: local[2] or spark://HOST:PORT."),
]
RunId = Annotated[str | None, typer.Option("--run-id", help="Run id (default: a new one).")]
Record = Annotated[
    bool,
    typer.Option(help="Store the report in PostgreSQL (bulk.ingest_runs) for the API."),
]


def make_app(settings_factory: Callable[[], BulkSettings]) -> typer.Typer:
    app = typer.Typer(
        no_args_is_help=True,
        help="Bulk daily stock and ETF prices: CSVs -> validated Parquet -> rolling features "
        "-> a volume model.",
    )

    def _service(**overrides: Any) -> BulkService:
        from metalcast_bulk.bootstrap import build_service
        from metalcast_core import configure_logging

        settings = settings_factory()
        given = {k: v for k, v in overrides.items() if v is not None}
        if given:
            from pydantic import ValidationError

            try:
                settings.bulk = settings.bulk.model_validate(
                    {**settings.bulk.model_dump(), **given}
                )
            except ValidationError as exc:
                problems = "; ".join(
                    f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
                    for e in exc.errors()
                )
                raise typer.BadParameter(problems) from exc
        configure_logging(settings.log_level)
        return build_service(settings)

    @app.command("ingest")
    def ingest(
        input_dir: Annotated[
            str,
            typer.Argument(
                metavar="DIR", help="Folder (or s3://bucket/prefix) with stocks/ and etfs/."
            ),
        ],
        engine: Engine = None,
        spark_master: SparkMaster = None,
        run_id: RunId = None,
        kind: Annotated[
            str | None,
            typer.Option(
                help="Only this kind (stocks or etfs), not published: `publish` ends the run."
            ),
        ] = None,
        record: Record = True,
    ) -> None:
        """Validate every CSV into the prices dataset; bad rows to quarantine; publish."""
        from metalcast_bulk.storage import new_run_id

        service = _service(engine=engine, spark_master=spark_master)
        if kind is not None:
            run = run_id or new_run_id()
            report = service.ingest_kind(input_dir, run, kind)
            typer.echo(f"run {run} ({kind}, not yet published):")
            for line in report.lines():
                typer.echo(line)
            return
        try:
            result = service.ingest(input_dir, run_id, save_report=record)
        except ValueError as exc:
            typer.secho(str(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from exc
        typer.echo(
            f"prices run {result.run_id} published in {result.seconds:.1f} s "
            f"({service.engine.name}) at {service.store.uri('prices')}"
        )
        for line in result.report.lines():
            typer.echo(line)

    @app.command("publish")
    def publish(
        input_dir: Annotated[str, typer.Argument(metavar="DIR", help="The folder ingested.")],
        run_id: Annotated[str, typer.Option("--run-id", help="The run its kinds went into.")],
        record: Record = True,
    ) -> None:
        """Merge the kinds' reports of a run and make it the current prices dataset."""
        service = _service()
        try:
            report = service.publish(input_dir, run_id, save_report=record)
        except ValueError as exc:
            typer.secho(str(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"prices run {run_id} published")
        for line in report.lines():
            typer.echo(line)

    @app.command("features")
    def features(
        engine: Engine = None,
        spark_master: SparkMaster = None,
        run_id: RunId = None,
        window: Annotated[
            str | None, typer.Option(help="calendar (30 days, the default) or rows (30 rows).")
        ] = None,
        window_size: Annotated[int | None, typer.Option(help="Days or rows (30).", min=1)] = None,
        min_periods: Annotated[
            int | None, typer.Option(help="Rows a window needs (1 calendar, size for rows).", min=1)
        ] = None,
    ) -> None:
        """vol_moving_avg and adj_close_rolling_med per symbol, into the features dataset."""
        service = _service(
            engine=engine,
            spark_master=spark_master,
            window=window,
            window_size=window_size,
            min_periods=min_periods,
        )
        result = service.features(run_id)
        typer.echo(
            f"features run {result.run_id} published in {result.seconds:.1f} s "
            f"({service.engine.name}, window {service.settings.bulk.window_rule().describe()}): "
            f"{result.rows} rows from prices run {result.prices_run_id}"
        )

    @app.command("train")
    def train(
        run_id: RunId = None,
        register: Annotated[
            bool,
            typer.Option(
                help="Record the run and version in the model registry (S3 + PostgreSQL)."
            ),
        ] = True,
    ) -> None:
        """LightGBM volume model, time split, metrics vs naive; recorded in the registry."""
        service = _service()
        result, recorded = service.train(run_id, register=register)
        m = result.metrics
        typer.echo(
            f"train run {result.run_id}: {result.n_train} rows up to {result.train_end}, "
            f"tested on {result.n_test} rows {result.test_start}..{result.test_end}"
        )
        typer.echo(
            f"  MAE {m['mae']:.0f} (naive {m['baseline_mae']:.0f}, ratio {m['mae_ratio']:.3f})  "
            f"MSE {m['mse']:.4g} (naive {m['baseline_mse']:.4g}, ratio {m['mse_ratio']:.3f})"
        )
        typer.echo(
            f"  model and metrics.json in {service.store.uri(f'train/runs/{result.run_id}')}"
        )
        if recorded is not None:
            typer.echo(
                f"  registry: VOLUME v{recorded.version} ({recorded.artifact_uri}), "
                f"training run {recorded.training_run_id}: {recorded.decision}"
            )

    @app.command("report")
    def report(
        as_json: Annotated[bool, typer.Option("--json", help="Print report.json as is.")] = False,
    ) -> None:
        """The validation report of the current prices dataset."""
        from metalcast_bulk.storage import NoCurrentRun
        from metalcast_bulk.validate import Report

        service = _service()
        try:
            value = service.report()
        except NoCurrentRun as exc:
            typer.secho(str(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from exc
        if as_json:
            typer.echo(json.dumps(value, indent=2))
            return
        typer.echo(f"prices run {value['run_id']}")
        for line in Report.from_json(value).lines():
            typer.echo(line)

    @app.command("spark-master")
    def spark_master(
        host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="The master's port.")] = 7077,
        webui_port: Annotated[int, typer.Option(help="Its web UI (and /json/ status).")] = 8080,
    ) -> None:
        """Run a Spark standalone master (pyspark's own jars; compose's spark-master)."""
        import os

        from metalcast_bulk import spark_cluster as sc

        command = sc.java_command(sc.MASTER_CLASS, sc.master_arguments(host, port, webui_port))
        sc.exec_java(command, sc.java_env(os.environ, host))

    @app.command("spark-worker")
    def spark_worker(
        master: Annotated[str, typer.Argument(help="spark://HOST:PORT of the master.")],
        host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="The worker's port.")] = 7078,
        webui_port: Annotated[int, typer.Option(help="Its web UI.")] = 8081,
        cores: Annotated[int, typer.Option(help="Cores it offers.", min=1)] = 2,
        memory: Annotated[str, typer.Option(help="Memory it offers to executors.")] = "2g",
        work_dir: Annotated[str, typer.Option(help="Executors' scratch folder.")] = "/tmp/spark",
    ) -> None:
        """Run a Spark standalone worker (pyspark's own jars; compose's spark-worker)."""
        import os

        from metalcast_bulk import spark_cluster as sc

        arguments = sc.worker_arguments(master, host, port, webui_port, cores, memory, work_dir)
        sc.exec_java(sc.java_command(sc.WORKER_CLASS, arguments), sc.java_env(os.environ, host))

    return app
