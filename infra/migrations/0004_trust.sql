-- Models you can trust: backtests, champion/challenger, calibrated intervals, pins,
-- idempotent fits and retention.

-- Runs: 'unchanged' when no window moved (nothing fitted, no version made); the candidates.
ALTER TABLE ml.training_runs DROP CONSTRAINT training_runs_status_check;
ALTER TABLE ml.training_runs ADD CONSTRAINT training_runs_status_check
    CHECK (status IN ('running', 'succeeded', 'partial', 'failed', 'unchanged'));
ALTER TABLE ml.training_runs ADD COLUMN candidates jsonb NOT NULL DEFAULT '[]';

-- Versions: which candidate configuration, the window's content and span, its backtest and
-- the calibration of its intervals; deleted_at once retention removed its file.
ALTER TABLE ml.model_versions
    ADD COLUMN candidate      text,                    -- candidate name, e.g. 'arima'
    ADD COLUMN candidate_key  text,                    -- hash of family + hyperparameters + x_size
    ADD COLUMN window_hash    text,                    -- hash of the window's values
    ADD COLUMN window_hours   integer,                 -- hours from first to last value
    ADD COLUMN backtest       jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN calibration    jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN decision       text,                    -- why it was or was not promoted
    ADD COLUMN deleted_at     timestamptz;
-- The same configuration on the same window is one version, never two.
CREATE UNIQUE INDEX model_versions_fit_key
    ON ml.model_versions (symbol, candidate_key, window_hash)
    WHERE deleted_at IS NULL AND candidate_key IS NOT NULL;

-- Per run and symbol: what was decided, with the window it used.
ALTER TABLE ml.training_results DROP CONSTRAINT training_results_status_check;
ALTER TABLE ml.training_results ADD CONSTRAINT training_results_status_check
    CHECK (status IN ('promoted', 'kept', 'failed', 'unchanged', 'pinned'));
ALTER TABLE ml.training_results
    ADD COLUMN window_start timestamptz,
    ADD COLUMN window_end   timestamptz,
    ADD COLUMN window_hours integer,
    ADD COLUMN decision     jsonb NOT NULL DEFAULT '{}';

-- Every candidate's backtest in every run (one row per run, symbol and candidate).
CREATE TABLE ml.backtests (
    run_id        bigint NOT NULL REFERENCES ml.training_runs (id),
    symbol        text   NOT NULL,
    candidate_key text   NOT NULL,
    candidate     text   NOT NULL,
    result        jsonb  NOT NULL,
    PRIMARY KEY (run_id, symbol, candidate_key)
);

-- Backtest forecasts, reused while their window is unchanged.
CREATE TABLE ml.backtest_forecasts (
    symbol        text        NOT NULL,
    candidate_key text        NOT NULL,
    origin        timestamptz NOT NULL,              -- the window's last hour
    window_hash   text        NOT NULL,
    scale         float8      NOT NULL,              -- mean |one-step change| in the window
    points        float8[]    NOT NULL,              -- steps 1..horizon
    se            float8[],                          -- the model's own standard errors
    failed        text,                              -- the fit failed: points are naive
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, candidate_key, origin)
);

-- Pins: a rollback pins the pointer; the trainer never moves a pinned pointer.
ALTER TABLE ml.production_models
    ADD COLUMN pinned_at  timestamptz,
    ADD COLUMN pinned_by  text,
    ADD COLUMN pin_reason text;

ALTER TABLE ml.production_history DROP CONSTRAINT production_history_action_check;
ALTER TABLE ml.production_history ADD CONSTRAINT production_history_action_check
    CHECK (action IN ('promote', 'rollback', 'unpin'));
ALTER TABLE ml.production_history ADD COLUMN pinned boolean NOT NULL DEFAULT false;
CREATE INDEX production_history_to_version ON ml.production_history (to_version_id);
