-- Grants for what 0005_instruments.sql added, by the rule of 0008_roles.sql (a migration that
-- adds a table grants it): 0005 was written alongside the roles, so its grants come here.
-- Views run with their owner's rights: reading one needs SELECT on the view only.

GRANT USAGE ON SCHEMA ref TO metalcast_sink, metalcast_trainer, metalcast_api, metalcast_watch;
GRANT SELECT ON ref.instruments
    TO metalcast_sink, metalcast_trainer, metalcast_api, metalcast_watch;
-- `metalcast instruments add|remove|sync` is the sink's front door (metalcast_sink.cli).
GRANT INSERT, UPDATE, DELETE ON ref.instruments TO metalcast_sink;

-- Daily bars: the bar sink writes them (idempotent upserts); the trainer and the API read.
GRANT SELECT, INSERT, UPDATE ON prices.bars TO metalcast_sink;
GRANT USAGE ON SCHEMA prices TO metalcast_trainer;
GRANT SELECT ON prices.bars TO metalcast_trainer, metalcast_api;

-- The long views and the analyses: the trainer reads an instrument's series, the API serves
-- /v1/instruments and /v1/analytics.
GRANT SELECT ON
    analytics.instrument_prices_hourly,
    analytics.instrument_prices_daily,
    analytics.monthly_summary,
    analytics.daily_returns,
    analytics.drawdowns,
    analytics.rallies,
    analytics.return_correlations
    TO metalcast_trainer, metalcast_api;
