-- Bootstrap of the application roles and database privileges.
--
-- Run ONCE per cluster (and again whenever you like: it is idempotent) as a superuser (or a role with
-- CREATEROLE that owns the database), connected to the application database, BEFORE the migrations.
-- It creates the four LOGIN roles without passwords; set them separately, never in a file under git:
--     ALTER ROLE nlp_writer PASSWORD '...';   -- or psql's \password nlp_writer
-- The local cluster (devtools/pgcluster/) runs this file and then sets generated
-- passwords as SCRAM verifiers, so no clear-text password reaches the server or its logs.
--
--   nlp_owner    owns the database, the schemas nlp/analytics/nlp_meta and every table; runs migrations
--                and the retention job. Not a superuser.
--   nlp_writer   the ner-processor function: INSERT into nlp.documents/nlp.entities plus SELECT on the five
--                columns of nlp.documents it needs for the idempotency check (grants in 0001_schema.sql).
--   nlp_analyst  entity-stats and humans with psql on the replica: SELECT on the views of schema analytics.
--   nlp_rollup   the rollup worker: reads the new rows of nlp.documents/nlp.entities, writes the rollups
--                of schema analytics (grants in 0004_campaign_scale.sql).

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['nlp_owner', 'nlp_writer', 'nlp_analyst', 'nlp_rollup'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
    END LOOP;
END
$$;

-- Re-assert the attributes every time: a role that already existed (created by hand) gets no extra powers.
ALTER ROLE nlp_owner   LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT;
ALTER ROLE nlp_writer  LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT;
ALTER ROLE nlp_analyst LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT;
ALTER ROLE nlp_rollup  LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT;

-- Defence in depth: even if a grant slipped through, analyst sessions start read-only.
ALTER ROLE nlp_analyst SET default_transaction_read_only = on;

-- Database level: the owner role owns the database (and thereby, on PostgreSQL 15, schema public through
-- pg_database_owner); nobody else may connect or create temporary tables unless granted here.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I OWNER TO nlp_owner', current_database());
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO nlp_writer, nlp_analyst, nlp_rollup', current_database());
END
$$;
