-- Macro series (FRED) with their vintages: what was known about a value on each past day.
-- docs/macro.md says which series are kept and why, and how point-in-time features read them.
--
-- A revision of a past value is a new row (a new realtime_start), never an overwrite: the
-- natural key is (series_id, date, realtime_start). A replay stores nothing twice; only
-- realtime_end of an existing vintage may move (FRED closes a vintage when it is revised).

CREATE SCHEMA IF NOT EXISTS macro;

-- The series kept, with how long after its date a value is published (its publication lag,
-- in days): a feature row for day D reads a series' values dated up to D - lag only.
CREATE TABLE macro.series (
    series_id            text        PRIMARY KEY CHECK (series_id ~ '^[A-Z0-9][A-Z0-9_]{0,39}$'),
    title                text        NOT NULL DEFAULT '',
    units                text        NOT NULL DEFAULT '',
    frequency            text        NOT NULL DEFAULT 'daily'
                                     CHECK (frequency IN ('daily', 'weekly', 'monthly', 'quarterly')),
    publication_lag_days integer     NOT NULL DEFAULT 1 CHECK (publication_lag_days >= 0),
    source               text        NOT NULL DEFAULT 'fred',
    updated_at           timestamptz NOT NULL DEFAULT now()
);

INSERT INTO macro.series (series_id, title, units, frequency, publication_lag_days) VALUES
    ('DGS10', '10-Year Treasury Constant Maturity Rate', 'percent', 'daily', 1),
    ('DFII10', '10-Year Treasury Inflation-Indexed Security, Constant Maturity', 'percent', 'daily', 1),
    ('T10YIE', '10-Year Breakeven Inflation Rate', 'percent', 'daily', 1),
    ('DTWEXBGS', 'Nominal Broad U.S. Dollar Index', 'index Jan 2006=100', 'daily', 7),
    ('DFF', 'Federal Funds Effective Rate', 'percent', 'daily', 1);

-- One row per (series, date, vintage). value NULL: the provider had no value (FRED's ".").
CREATE TABLE macro.observations (
    series_id      text           NOT NULL,
    date           date           NOT NULL,
    realtime_start date           NOT NULL,
    realtime_end   date           NOT NULL,
    value          numeric(24, 8),
    source         text           NOT NULL DEFAULT 'fred',
    fetched_at     timestamptz    NOT NULL,
    loaded_at      timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT macro_observations_natural_key PRIMARY KEY (series_id, date, realtime_start),
    CHECK (realtime_end >= realtime_start)
);

-- Point-in-time reads: a series' values known by a day, newest first.
CREATE INDEX macro_observations_known ON macro.observations (series_id, realtime_start, date);

-- Grants (the rule of 0008_roles.sql): the macro sink writes; the trainer, API and watch read.
GRANT USAGE ON SCHEMA macro TO metalcast_sink, metalcast_trainer, metalcast_api, metalcast_watch;
GRANT SELECT, INSERT, UPDATE ON macro.observations, macro.series TO metalcast_sink;
GRANT SELECT ON macro.observations, macro.series
    TO metalcast_trainer, metalcast_api, metalcast_watch;
