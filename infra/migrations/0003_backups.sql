-- Backups, their verifications and the pipeline watch (metalcast-backup).
-- The manifests in S3 (<backups bucket>/backups/<id>/manifest.json) hold the same facts;
-- a restore re-reads them so these tables list every backup again.

CREATE SCHEMA IF NOT EXISTS ops;

CREATE TABLE ops.backups (
    id            text        PRIMARY KEY,          -- 20260115T060000.123456Z (UTC)
    status        text        NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'complete', 'failed', 'deleted')),
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    deleted_at    timestamptz,
    bucket        text        NOT NULL,
    prefix        text        NOT NULL,             -- backups/<id>/
    database_name text,
    server_version text,
    tables        integer,
    total_rows    bigint,
    models        integer,
    dump_bytes    bigint,
    models_bytes  bigint,
    total_bytes   bigint,
    duration_s    double precision,
    error         text,
    manifest      jsonb
);
CREATE INDEX backups_started_at ON ops.backups (started_at DESC);

-- Every verification of a backup (the backup DAG verifies each new one; more on demand).
CREATE TABLE ops.backup_verifications (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    backup_id        text        NOT NULL REFERENCES ops.backups (id),
    status           text        NOT NULL CHECK (status IN ('passed', 'failed')),
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL,
    duration_s       double precision NOT NULL,
    scratch_database text        NOT NULL,
    tables_checked   integer     NOT NULL DEFAULT 0,
    models_checked   integer     NOT NULL DEFAULT 0,
    problems         jsonb       NOT NULL DEFAULT '[]',
    error            text
);
CREATE INDEX backup_verifications_backup ON ops.backup_verifications (backup_id, started_at DESC);

-- The newest backups with their newest verification: what the API and dashboard show.
CREATE VIEW ops.backups_overview AS
SELECT b.id, b.status, b.started_at, b.finished_at, b.duration_s, b.total_rows, b.models,
       b.total_bytes, b.error,
       v.status AS verify_status, v.finished_at AS verified_at, v.duration_s AS verify_duration_s,
       v.error AS verify_error
FROM ops.backups AS b
LEFT JOIN LATERAL (
    SELECT status, finished_at, duration_s, error
    FROM ops.backup_verifications
    WHERE backup_id = b.id
    ORDER BY started_at DESC
    LIMIT 1
) AS v ON true;

-- What the previous watch run saw (e.g. the dead-letter topic's end offset), by key.
CREATE TABLE ops.watch_state (
    key        text        PRIMARY KEY,
    value      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every watch run and what it found.
CREATE TABLE ops.watch_runs (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    checked_at timestamptz NOT NULL DEFAULT now(),
    ok         boolean     NOT NULL,
    problems   jsonb       NOT NULL DEFAULT '[]',
    figures    jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX watch_runs_checked_at ON ops.watch_runs (checked_at DESC);
