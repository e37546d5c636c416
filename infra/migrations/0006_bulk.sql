-- The bulk market-data pipeline (metalcast bulk, docs/bulk.md): one row per published ingest
-- run with its validation report (counts per reason and per file), for the CLI and the API.
-- The datasets themselves are Parquet files on disk or in S3, not tables.

CREATE SCHEMA IF NOT EXISTS bulk;

CREATE TABLE bulk.ingest_runs (
    run_id           text        PRIMARY KEY,       -- the prices stage's run, e.g. 20261130T171500Z-1a2b3c4d
    data_url         text        NOT NULL,          -- where the datasets are (disk path or s3://)
    input            text        NOT NULL,          -- the input folder ingested
    engine           text        NOT NULL CHECK (engine IN ('polars', 'spark')),
    files            integer     NOT NULL,
    rows_good        bigint      NOT NULL,
    rows_quarantined bigint      NOT NULL,
    report           jsonb       NOT NULL,          -- Report.as_json(): reasons, by_file
    seconds          float8,
    published_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ingest_runs_published_at ON bulk.ingest_runs (published_at DESC);
