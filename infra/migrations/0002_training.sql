-- Training runs, model versions, and which version is in production per symbol.

-- One row per run of the trainer (one run fits one model per metal).
CREATE TABLE ml.training_runs (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trigger          text        NOT NULL,              -- 'batch-loaded' | 'manual'
    trigger_batch_id uuid,                              -- newest batch-loaded event coalesced
    trigger_events   integer     NOT NULL DEFAULT 0,    -- how many events this run answers
    family           text        NOT NULL,              -- model family, e.g. 'arima'
    x_size           integer     NOT NULL,
    y_size           integer     NOT NULL,
    window_start     timestamptz,                       -- first hour of the training window
    window_end       timestamptz,                       -- last hour of the training window
    status           text        NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'succeeded', 'partial', 'failed')),
    error            text,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    timings          jsonb       NOT NULL DEFAULT '{}'  -- seconds per stage
);
CREATE INDEX training_runs_started_at ON ml.training_runs (started_at DESC);

-- Every fitted model: one version per symbol per successful fit.
CREATE TABLE ml.model_versions (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    symbol          text        NOT NULL,
    version         integer     NOT NULL CHECK (version > 0),
    run_id          bigint      NOT NULL REFERENCES ml.training_runs (id),
    family          text        NOT NULL,
    model_class     text        NOT NULL,
    hyperparameters jsonb       NOT NULL DEFAULT '{}',
    fitted_params   jsonb       NOT NULL DEFAULT '{}',
    metrics         jsonb       NOT NULL DEFAULT '{}',
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    n_observations  integer     NOT NULL,
    artifact_uri    text        NOT NULL,               -- s3://bucket/models/XAU/7/XAUUSD.zip
    sha256          text        NOT NULL,
    size_bytes      bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (symbol, version)
);

-- What each run did for each symbol, failures included (with the reason).
CREATE TABLE ml.training_results (
    run_id           bigint NOT NULL REFERENCES ml.training_runs (id),
    symbol           text   NOT NULL,
    status           text   NOT NULL CHECK (status IN ('promoted', 'kept', 'failed')),
    reason           text,
    model_version_id bigint REFERENCES ml.model_versions (id),
    PRIMARY KEY (run_id, symbol)
);

-- The production pointer per symbol ...
CREATE TABLE ml.production_models (
    symbol           text        PRIMARY KEY,
    model_version_id bigint      NOT NULL REFERENCES ml.model_versions (id),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    updated_by       text        NOT NULL
);

-- ... and every move of it.
CREATE TABLE ml.production_history (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    symbol          text        NOT NULL,
    from_version_id bigint      REFERENCES ml.model_versions (id),
    to_version_id   bigint      NOT NULL REFERENCES ml.model_versions (id),
    action          text        NOT NULL CHECK (action IN ('promote', 'rollback')),
    changed_by      text        NOT NULL,
    changed_at      timestamptz NOT NULL DEFAULT now(),
    note            text
);
CREATE INDEX production_history_symbol ON ml.production_history (symbol, changed_at DESC);
