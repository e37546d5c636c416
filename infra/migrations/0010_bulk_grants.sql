-- Grants for what 0006_bulk.sql added, by the rule of 0008_roles.sql (0006 was written
-- alongside the roles, so its grants come here), and the bulk pipeline's own group role.
--
-- metalcast_bulk: `metalcast bulk` (and the market_data_bulk DAG, whose Airflow login user is a
-- member) records its ingest runs and its volume model; the model goes through the registry
-- like the trainer's, so the role is a member of metalcast_trainer for the ml.* tables.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'metalcast_bulk') THEN
        BEGIN
            CREATE ROLE metalcast_bulk NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database's migration created it a moment ago
        END;
    END IF;
    IF NOT pg_has_role('metalcast_bulk', 'metalcast_trainer', 'MEMBER') THEN
        BEGIN
            GRANT metalcast_trainer TO metalcast_bulk;
        EXCEPTION WHEN duplicate_object OR unique_violation OR internal_error THEN
            NULL;  -- granted concurrently
        END;
    END IF;
END
$$;

REVOKE ALL ON SCHEMA bulk FROM PUBLIC;
GRANT USAGE ON SCHEMA bulk TO metalcast_bulk, metalcast_api;
GRANT SELECT, INSERT, UPDATE ON bulk.ingest_runs TO metalcast_bulk;
-- GET /v1/bulk/ingest-runs shows the validation reports.
GRANT SELECT ON bulk.ingest_runs TO metalcast_api;
