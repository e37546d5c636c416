-- Ticks, hourly analytics rows and the training window.
-- docs/data-model.md explains the hourly rule.

CREATE SCHEMA IF NOT EXISTS prices;
CREATE SCHEMA IF NOT EXISTS analytics;
CREATE SCHEMA IF NOT EXISTS ml;
CREATE SCHEMA IF NOT EXISTS pipeline;

-- Every observed price, any instrument (metals, crypto, stocks): a long table.
CREATE TABLE prices.ticks (
    symbol      text        NOT NULL,
    source      text        NOT NULL,
    instrument  text        NOT NULL CHECK (instrument IN ('spot', 'futures')),
    observed_at timestamptz NOT NULL,
    price       numeric(24, 8) NOT NULL CHECK (price > 0),
    currency    text        NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    fetched_at  timestamptz NOT NULL,
    raw         jsonb,
    loaded_at   timestamptz NOT NULL DEFAULT now(),
    -- The natural key. Ordered (symbol, observed_at, source) so that the same index also
    -- serves "ticks of a symbol in a time range" (the hourly rule, history queries).
    CONSTRAINT ticks_natural_key UNIQUE (symbol, observed_at, source)
);

-- All history, one row per UTC hour; one column per metal in USD per troy ounce.
-- A metal with no spot USD tick in an hour is NULL in that row.
CREATE TABLE analytics.metal_prices (
    id  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts  timestamptz NOT NULL UNIQUE CHECK (ts = date_trunc('hour', ts, 'UTC')),
    xau numeric(24, 8),
    xag numeric(24, 8),
    xpt numeric(24, 8),
    xpd numeric(24, 8)
);

-- Only the last twelve hourly entries, oldest first: what the models train on.
CREATE VIEW ml.metal_prices_training AS
SELECT id, ts, xau, xag, xpt, xpd
FROM (
    SELECT id, ts, xau, xag, xpt, xpd
    FROM analytics.metal_prices
    ORDER BY ts DESC
    LIMIT 12
) AS newest
ORDER BY ts;

-- The sink's committed batches; doubles as the outbox for pipeline.batch-loaded.v1.
CREATE TABLE pipeline.batches (
    batch_id       uuid        PRIMARY KEY,
    loaded_at      timestamptz NOT NULL DEFAULT now(),
    symbols        text[]      NOT NULL,
    first_hour     timestamptz,
    last_hour      timestamptz,
    ticks_received integer     NOT NULL,
    rows_inserted  integer     NOT NULL,
    duplicates     integer     NOT NULL,
    dead_lettered  integer     NOT NULL,
    event          jsonb       NOT NULL,
    published_at   timestamptz
);
CREATE INDEX batches_unpublished ON pipeline.batches (loaded_at) WHERE published_at IS NULL;
