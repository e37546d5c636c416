-- Least privilege: one group role per service, holding exactly the grants its SQL needs, and
-- one function through which the API moves the production pointer.
-- docs/operations.md ("Roles and identities") says who may do what and how login users are made.
--
-- The roles are NOLOGIN groups: a service logs in as its own LOGIN user, a member of its group
-- (`metalcast db create-users` makes them in production). Roles are cluster-wide while this
-- file runs once per database (every test database too, on one server), so they are created
-- only if missing, and a concurrent creation by another database's migration is harmless.
--
-- THE RULE for later migrations: grants are per table, never "ALL TABLES IN SCHEMA" and never
-- ALTER DEFAULT PRIVILEGES (a restore with --no-owner could not replay those). A migration
-- that adds a table or view grants it, in the same file, to the roles whose code uses it (and
-- USAGE on its identity sequence to the roles that insert); tests/integration/test_roles.py
-- fails on a table no role can read.
--
-- metalcast_ingestor is not created: the ingestor only talks to Kafka.

DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY[
        'metalcast_sink', 'metalcast_trainer', 'metalcast_api', 'metalcast_backup',
        'metalcast_watch', 'metalcast_pointer'
    ] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it a moment ago
            END;
        END IF;
    END LOOP;
    -- pg_dump reads every table and sequence: the predefined read-everything role (PG 14+).
    IF NOT pg_has_role('metalcast_backup', 'pg_read_all_data', 'MEMBER') THEN
        BEGIN
            GRANT pg_read_all_data TO metalcast_backup;
        EXCEPTION WHEN duplicate_object OR unique_violation OR internal_error THEN
            NULL;  -- granted concurrently ("tuple concurrently updated")
        END;
    END IF;
END
$$;

-- Nothing by default: PUBLIC keeps CONNECT and TEMPORARY on the database (the sink stages
-- batches in a temporary table) but nothing in our schemas.
REVOKE ALL ON SCHEMA prices, analytics, ml, pipeline, ops FROM PUBLIC;

-- sink: ticks in, hourly rows up to date, its batches (the outbox) and partition positions.
GRANT USAGE ON SCHEMA prices, analytics, pipeline TO metalcast_sink;
GRANT SELECT, INSERT ON prices.ticks TO metalcast_sink;
GRANT SELECT, INSERT, UPDATE ON analytics.metal_prices TO metalcast_sink;
GRANT USAGE ON SEQUENCE analytics.metal_prices_id_seq TO metalcast_sink;
GRANT SELECT, INSERT, UPDATE ON pipeline.batches, pipeline.consumer_positions TO metalcast_sink;

-- trainer: reads the hourly rows; writes runs, versions, results, backtests and the pointer
-- (champion/challenger promotions); never deletes (retention marks versions deleted).
GRANT USAGE ON SCHEMA analytics, ml TO metalcast_trainer;
GRANT SELECT ON analytics.metal_prices, ml.metal_prices_training TO metalcast_trainer;
GRANT SELECT, INSERT, UPDATE ON
    ml.training_runs, ml.model_versions, ml.training_results, ml.production_models,
    ml.production_history, ml.backtests, ml.backtest_forecasts
    TO metalcast_trainer;
GRANT USAGE ON SEQUENCE
    ml.training_runs_id_seq, ml.model_versions_id_seq, ml.production_history_id_seq
    TO metalcast_trainer;

-- api: reads only (the pointer moves through ml.set_production below).
GRANT USAGE ON SCHEMA prices, analytics, ml, ops TO metalcast_api;
GRANT SELECT ON prices.ticks, analytics.metal_prices, ml.metal_prices_training TO metalcast_api;
GRANT SELECT ON
    ml.training_runs, ml.model_versions, ml.training_results, ml.production_models,
    ml.production_history, ml.backtests
    TO metalcast_api;
GRANT SELECT ON ops.backups_overview TO metalcast_api;

-- watch: reads ticks, runs and the outbox; keeps its own state and runs.
GRANT USAGE ON SCHEMA prices, ml, pipeline, ops TO metalcast_watch;
GRANT SELECT ON prices.ticks, ml.training_runs, pipeline.batches TO metalcast_watch;
GRANT SELECT, INSERT, UPDATE ON ops.watch_state TO metalcast_watch;
GRANT SELECT, INSERT ON ops.watch_runs TO metalcast_watch;
GRANT USAGE ON SEQUENCE ops.watch_runs_id_seq TO metalcast_watch;

-- backup: pg_read_all_data (above) reads every table for pg_dump and the row counts; it
-- records its backups and verifications. Its login user also needs CREATEDB for the scratch
-- databases `verify` restores into (a role attribute, not inherited: see docs/operations.md).
GRANT USAGE ON SCHEMA ops TO metalcast_backup;
GRANT SELECT, INSERT, UPDATE ON ops.backups TO metalcast_backup;
GRANT SELECT, INSERT ON ops.backup_verifications TO metalcast_backup;
GRANT USAGE ON SEQUENCE ops.backup_verifications_id_seq TO metalcast_backup;

-- pointer: owns ml.set_production and holds only what that function does.
GRANT USAGE ON SCHEMA ml TO metalcast_pointer;
GRANT SELECT ON ml.model_versions TO metalcast_pointer;
GRANT SELECT, INSERT, UPDATE ON ml.production_models TO metalcast_pointer;
GRANT INSERT ON ml.production_history TO metalcast_pointer;
GRANT USAGE ON SEQUENCE ml.production_history_id_seq TO metalcast_pointer;

-- Move symbol's production pointer by hand and record the move, in one transaction:
--   'rollback': point at version p_version (a version of p_symbol whose file retention kept)
--               and pin it there; refused if it already is in production, pinned;
--   'unpin':    lift the pin (p_version, if given, must be the version in production).
-- Refusals raise SQLSTATE MC409 with the reason (the API answers 409 with it). The caller
-- checks the model file before a rollback (the database cannot reach S3).
CREATE FUNCTION ml.set_production(
    p_symbol text,
    p_version integer,
    p_actor text,
    p_reason text DEFAULT NULL,
    p_action text DEFAULT 'rollback'
)
RETURNS TABLE (
    from_version integer,
    to_version integer,
    changed_at timestamptz,
    pinned boolean,
    note text
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_current_id bigint;
    v_current_version integer;
    v_pinned_at timestamptz;
    v_target_id bigint;
    v_at timestamptz;
    v_note text;
BEGIN
    IF p_symbol IS NULL OR p_actor IS NULL OR btrim(p_actor) = '' THEN
        RAISE EXCEPTION 'symbol and actor are required' USING ERRCODE = 'MC409';
    END IF;
    SELECT p.model_version_id, v.version, p.pinned_at
    INTO v_current_id, v_current_version, v_pinned_at
    FROM ml.production_models AS p JOIN ml.model_versions AS v ON v.id = p.model_version_id
    WHERE p.symbol = p_symbol
    FOR UPDATE OF p;

    IF p_action = 'rollback' THEN
        SELECT v.id INTO v_target_id
        FROM ml.model_versions AS v
        WHERE v.symbol = p_symbol AND v.version = p_version AND v.deleted_at IS NULL;
        IF v_target_id IS NULL THEN
            RAISE EXCEPTION '% has no version %', p_symbol, p_version USING ERRCODE = 'MC409';
        END IF;
        IF v_target_id = v_current_id AND v_pinned_at IS NOT NULL THEN
            RAISE EXCEPTION '% v% is already in production, pinned', p_symbol, p_version
                USING ERRCODE = 'MC409';
        END IF;
        v_note := coalesce(p_reason, format('rollback to v%s', p_version));
        INSERT INTO ml.production_models AS m
            (symbol, model_version_id, updated_at, updated_by, pinned_at, pinned_by, pin_reason)
        VALUES (p_symbol, v_target_id, now(), p_actor, now(), p_actor, v_note)
        ON CONFLICT (symbol) DO UPDATE
            SET model_version_id = EXCLUDED.model_version_id,
                updated_at = EXCLUDED.updated_at,
                updated_by = EXCLUDED.updated_by,
                pinned_at = EXCLUDED.pinned_at,
                pinned_by = EXCLUDED.pinned_by,
                pin_reason = EXCLUDED.pin_reason
        RETURNING m.updated_at INTO v_at;
        INSERT INTO ml.production_history
            (symbol, from_version_id, to_version_id, action, changed_by, changed_at, note, pinned)
        VALUES (p_symbol, v_current_id, v_target_id, 'rollback', p_actor, v_at, v_note, true);
        RETURN QUERY SELECT v_current_version, p_version, v_at, true, v_note;

    ELSIF p_action = 'unpin' THEN
        IF v_current_id IS NULL THEN
            RAISE EXCEPTION '% has no production version', p_symbol USING ERRCODE = 'MC409';
        END IF;
        IF v_pinned_at IS NULL THEN
            RAISE EXCEPTION '% is not pinned', p_symbol USING ERRCODE = 'MC409';
        END IF;
        IF p_version IS NOT NULL AND p_version <> v_current_version THEN
            RAISE EXCEPTION '% v% is not the version in production (v%)',
                p_symbol, p_version, v_current_version USING ERRCODE = 'MC409';
        END IF;
        v_note := coalesce(p_reason, 'unpinned: champion/challenger decides again');
        UPDATE ml.production_models AS m
        SET pinned_at = NULL, pinned_by = NULL, pin_reason = NULL, updated_at = now(),
            updated_by = p_actor
        WHERE m.symbol = p_symbol
        RETURNING m.updated_at INTO v_at;
        INSERT INTO ml.production_history
            (symbol, from_version_id, to_version_id, action, changed_by, changed_at, note, pinned)
        VALUES (p_symbol, v_current_id, v_current_id, 'unpin', p_actor, v_at, v_note, false);
        RETURN QUERY SELECT v_current_version, v_current_version, v_at, false, v_note;

    ELSE
        RAISE EXCEPTION 'unknown action %: rollback or unpin', p_action USING ERRCODE = 'MC409';
    END IF;
END
$$;

ALTER FUNCTION ml.set_production(text, integer, text, text, text) OWNER TO metalcast_pointer;
REVOKE ALL ON FUNCTION ml.set_production(text, integer, text, text, text) FROM PUBLIC;
-- The API's rollback and unpin; the trainer's `metalcast models rollback|unpin` too.
GRANT EXECUTE ON FUNCTION ml.set_production(text, integer, text, text, text)
    TO metalcast_api, metalcast_trainer;
