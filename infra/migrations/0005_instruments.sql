-- Every instrument: the catalogue, daily bars, long analytics views and the analyses.
-- docs/instruments.md explains each object and the question each analysis answers.
-- analytics.metal_prices and ml.metal_prices_training are unchanged.

CREATE SCHEMA IF NOT EXISTS ref;

-- The instrument catalogue (infra/instruments.toml is its reviewed copy in git:
-- `metalcast instruments sync` upserts the file here; `metalcast instruments add` one row).
CREATE TABLE ref.instruments (
    symbol     text        PRIMARY KEY CHECK (symbol ~ '^[A-Z0-9][A-Z0-9._-]{0,19}$'),
    name       text        NOT NULL DEFAULT '',
    kind       text        NOT NULL CHECK (kind IN ('metal', 'crypto', 'equity', 'etf', 'fx', 'macro')),
    currency   text        NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    unit       text        NOT NULL DEFAULT '',
    cadence    text        NOT NULL DEFAULT 'hourly' CHECK (cadence IN ('hourly', 'daily')),
    providers  jsonb       NOT NULL DEFAULT '{}',   -- provider -> its own id ({"coingecko": "bitcoin"})
    model      jsonb,                               -- {"x_size": 30, "candidates": [...]}; NULL: not trained
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What metalcast knew before the catalogue (the metals, BTC and ETH), so nothing changes
-- until someone adds more.
INSERT INTO ref.instruments (symbol, name, kind, currency, unit, cadence, providers) VALUES
    ('XAU', 'Gold', 'metal', 'USD', 'troy ounce', 'hourly',
     '{"gold-api": "XAU", "metalpriceapi": "XAU", "metals-api": "XAU", "goldapi-io": "XAU", "simulated": "XAU"}'),
    ('XAG', 'Silver', 'metal', 'USD', 'troy ounce', 'hourly',
     '{"gold-api": "XAG", "metalpriceapi": "XAG", "metals-api": "XAG", "goldapi-io": "XAG", "simulated": "XAG"}'),
    ('XPT', 'Platinum', 'metal', 'USD', 'troy ounce', 'hourly',
     '{"gold-api": "XPT", "metalpriceapi": "XPT", "metals-api": "XPT", "goldapi-io": "XPT", "simulated": "XPT"}'),
    ('XPD', 'Palladium', 'metal', 'USD', 'troy ounce', 'hourly',
     '{"gold-api": "XPD", "metalpriceapi": "XPD", "metals-api": "XPD", "goldapi-io": "XPD", "simulated": "XPD"}'),
    ('BTC', 'Bitcoin', 'crypto', 'USD', 'coin', 'hourly', '{"coingecko": "bitcoin"}'),
    ('ETH', 'Ether', 'crypto', 'USD', 'coin', 'hourly', '{"coingecko": "ethereum"}');

-- Daily bars as the provider gives them (open, high, low, close, volume, in its currency).
-- The natural key (symbol, source, date): a replay stores nothing twice.
CREATE TABLE prices.bars (
    symbol     text           NOT NULL,
    source     text           NOT NULL,
    date       date           NOT NULL,
    open       numeric(24, 8) NOT NULL CHECK (open > 0),
    high       numeric(24, 8) NOT NULL CHECK (high > 0),
    low        numeric(24, 8) NOT NULL CHECK (low > 0),
    close      numeric(24, 8) NOT NULL CHECK (close > 0),
    volume     numeric(28, 8) CHECK (volume > 0),
    currency   text           NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    fetched_at timestamptz    NOT NULL,
    raw        jsonb,
    loaded_at  timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT bars_natural_key PRIMARY KEY (symbol, date, source),
    CHECK (high >= low)
);

-- The sink's batches name the table they went to (ticks or bars).
ALTER TABLE pipeline.batches ADD COLUMN target text NOT NULL DEFAULT 'prices.ticks';

-- Hourly, long, every instrument, all history: the last spot tick of each UTC hour (on a
-- tie, the source that sorts first) - the same rule as analytics.metal_prices.
CREATE VIEW analytics.instrument_prices_hourly AS
SELECT DISTINCT ON (t.symbol, date_trunc('hour', t.observed_at, 'UTC'))
    t.symbol,
    date_trunc('hour', t.observed_at, 'UTC') AS ts,
    t.price,
    t.currency,
    t.source
FROM prices.ticks AS t
WHERE t.instrument = 'spot'
ORDER BY t.symbol, date_trunc('hour', t.observed_at, 'UTC'), t.observed_at DESC, t.source;

-- Daily, long, every instrument, all history: bars where the instrument has them (one
-- source per day: the one that sorts first), else the UTC day of its hourly ticks (open the
-- first tick, close the last, high and low the extremes, no volume).
CREATE VIEW analytics.instrument_prices_daily AS
WITH bars AS (
    SELECT DISTINCT ON (symbol, date)
        symbol, date, open, high, low, close, volume, currency, source
    FROM prices.bars
    ORDER BY symbol, date, source
),
tick_days AS (
    SELECT
        t.symbol,
        (t.observed_at AT TIME ZONE 'UTC')::date AS date,
        (array_agg(t.price ORDER BY t.observed_at, t.source))[1] AS open,
        max(t.price) AS high,
        min(t.price) AS low,
        (array_agg(t.price ORDER BY t.observed_at DESC, t.source))[1] AS close,
        NULL::numeric AS volume,
        min(t.currency) AS currency,
        min(t.source) AS source
    FROM prices.ticks AS t
    WHERE t.instrument = 'spot'
      AND NOT EXISTS (SELECT 1 FROM prices.bars AS b WHERE b.symbol = t.symbol)
    GROUP BY t.symbol, (t.observed_at AT TIME ZONE 'UTC')::date
)
SELECT symbol, date, open, high, low, close, volume, currency, source FROM bars
UNION ALL
SELECT symbol, date, open, high, low, close, volume, currency, source FROM tick_days;

-- Q: what did each instrument average, and how far did it range, month by month?
CREATE VIEW analytics.monthly_summary AS
SELECT
    symbol,
    date_trunc('month', date)::date AS month,
    count(*)::int AS days,
    avg(close)::float8 AS avg_close,
    min(low)::float8 AS low,
    max(high)::float8 AS high,
    (max(high) - min(low))::float8 AS range,
    ((max(high) - min(low)) / nullif(avg(close), 0))::float8 AS range_pct_of_avg,
    (array_agg(close ORDER BY date))[1]::float8 AS first_close,
    (array_agg(close ORDER BY date DESC))[1]::float8 AS last_close
FROM analytics.instrument_prices_daily
GROUP BY symbol, date_trunc('month', date);

-- Q: how much did each instrument move from one observed day to the next, and how volatile
-- was it over the last 30 observations (standard deviation of log returns; annualised with
-- 365 days for crypto, 252 trading days otherwise)?
CREATE VIEW analytics.daily_returns AS
WITH r AS (
    SELECT
        d.symbol, d.date, d.close::float8 AS close,
        lag(d.close) OVER w::float8 AS previous_close,
        (d.close / lag(d.close) OVER w - 1)::float8 AS simple_return,
        ln(d.close / lag(d.close) OVER w)::float8 AS log_return
    FROM analytics.instrument_prices_daily AS d
    WINDOW w AS (PARTITION BY d.symbol ORDER BY d.date)
)
SELECT
    r.symbol, r.date, r.close, r.previous_close, r.simple_return, r.log_return,
    stddev_samp(r.log_return) OVER (
        PARTITION BY r.symbol ORDER BY r.date ROWS BETWEEN 29 PRECEDING AND CURRENT ROW
    ) AS volatility_30,
    stddev_samp(r.log_return) OVER (
        PARTITION BY r.symbol ORDER BY r.date ROWS BETWEEN 29 PRECEDING AND CURRENT ROW
    ) * sqrt(CASE WHEN i.kind = 'crypto' THEN 365 ELSE 252 END) AS volatility_30_annualised
FROM r
LEFT JOIN ref.instruments AS i ON i.symbol = r.symbol;

-- Q: what were the largest falls from a peak (drawdowns)? One row per peak: the lowest close
-- before the next higher peak, and how long that took.
CREATE VIEW analytics.drawdowns AS
WITH running AS (
    SELECT symbol, date, close,
        max(close) OVER (PARTITION BY symbol ORDER BY date) AS peak
    FROM analytics.instrument_prices_daily
),
episodes AS (
    SELECT symbol, date, close, peak,
        max(CASE WHEN close = peak THEN date END)
            OVER (PARTITION BY symbol ORDER BY date) AS peak_date
    FROM running
)
SELECT DISTINCT ON (symbol, peak_date)
    symbol,
    peak_date,
    peak::float8 AS peak_close,
    date AS trough_date,
    close::float8 AS trough_close,
    (close / peak - 1)::float8 AS change,
    (date - peak_date) AS days
FROM episodes
WHERE close < peak
ORDER BY symbol, peak_date, close, date;

-- Q: what were the largest rises from a low (rallies)? One row per low: the highest close
-- before the next lower low.
CREATE VIEW analytics.rallies AS
WITH running AS (
    SELECT symbol, date, close,
        min(close) OVER (PARTITION BY symbol ORDER BY date) AS trough
    FROM analytics.instrument_prices_daily
),
episodes AS (
    SELECT symbol, date, close, trough,
        max(CASE WHEN close = trough THEN date END)
            OVER (PARTITION BY symbol ORDER BY date) AS trough_date
    FROM running
)
SELECT DISTINCT ON (symbol, trough_date)
    symbol,
    trough_date,
    trough::float8 AS trough_close,
    date AS peak_date,
    close::float8 AS peak_close,
    (close / trough - 1)::float8 AS change,
    (date - trough_date) AS days
FROM episodes
WHERE close > trough
ORDER BY symbol, trough_date, close DESC, date;

-- Q: which instruments move together? Pearson correlation of daily log returns on the days
-- both have one (the API narrows the symbols and the period before correlating).
CREATE VIEW analytics.return_correlations AS
SELECT
    a.symbol AS symbol_a,
    b.symbol AS symbol_b,
    count(*)::int AS days,
    corr(a.log_return, b.log_return)::float8 AS correlation
FROM analytics.daily_returns AS a
JOIN analytics.daily_returns AS b ON b.date = a.date AND b.symbol > a.symbol
WHERE a.log_return IS NOT NULL AND b.log_return IS NOT NULL
GROUP BY a.symbol, b.symbol;
