-- The gold valuation model (docs/valuation.md): what each LightGBM version of XAU-VAL was
-- fitted with, beside its row in ml.model_versions, and the numbers the valuation page shows.

-- One row per LightGBM valuation version: the grid search (grid, expanding-window CV folds,
-- every combination's fold scores, the best parameters), the features with their training
-- ranges (the fallback rule) and importances, and the backtest against naive and ARIMA.
CREATE TABLE ml.valuation_fits (
    model_version_id bigint      PRIMARY KEY REFERENCES ml.model_versions (id),
    symbol           text        NOT NULL,
    run_id           bigint      NOT NULL REFERENCES ml.training_runs (id),
    features         jsonb       NOT NULL,  -- names, in the booster's order
    feature_ranges   jsonb       NOT NULL,  -- name -> [min, max] in training
    importances      jsonb       NOT NULL,  -- name -> share of the total gain
    search           jsonb       NOT NULL,  -- grid, folds, results, best_params
    backtest         jsonb       NOT NULL,  -- per candidate: MASE, MAE ratio to naive, ...
    decision         text        NOT NULL,
    promoted         boolean     NOT NULL,
    forecast         jsonb       NOT NULL,  -- the next day's: date, price, fallback, reason
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Per version and day: gold's close beside the model's in-sample fitted value ('fitted') or
-- its walk-forward backtest forecast ('backtest', with naive's and whether the EMA-30
-- fallback stood in, and why).
CREATE TABLE ml.valuation_points (
    model_version_id bigint  NOT NULL REFERENCES ml.model_versions (id),
    kind             text    NOT NULL CHECK (kind IN ('fitted', 'backtest')),
    date             date    NOT NULL,
    actual           float8,
    value            float8  NOT NULL,  -- the served value (the EMA-30 where it fell back)
    model_value      float8,            -- the booster's own
    naive            float8,
    fallback         boolean NOT NULL DEFAULT false,
    fallback_reason  text,
    PRIMARY KEY (model_version_id, kind, date)
);

GRANT SELECT, INSERT, UPDATE ON ml.valuation_fits, ml.valuation_points TO metalcast_trainer;
GRANT SELECT ON ml.valuation_fits, ml.valuation_points TO metalcast_api;
