-- Queries of the migration runner (python -m functions.runtime.migrate), as role nlp_owner on the primary.
-- The applied migrations are recorded in nlp_meta.schema_migrations.

-- name: whoami
SELECT current_user, current_database();

-- name: tracking_table_exists
SELECT to_regclass('nlp_meta.schema_migrations') IS NOT NULL;

-- name: create_tracking_table
-- Run only when tracking_table_exists is false: CREATE SCHEMA IF NOT EXISTS still demands CREATE on the
-- database.
CREATE SCHEMA IF NOT EXISTS nlp_meta;
CREATE TABLE IF NOT EXISTS nlp_meta.schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    applied_by  text NOT NULL DEFAULT current_user,
    duration_ms real
);

-- name: applied
SELECT version, name, checksum FROM nlp_meta.schema_migrations;

-- name: lock_timeout
-- For this transaction only: how long to wait for another migrator's lock (or a table lock).
SELECT set_config('lock_timeout', %(timeout_ms)s, true);

-- name: set_role
-- {role} is an identifier, composed with psycopg.sql (superuser runs that act as nlp_owner).
SET LOCAL ROLE {role};

-- name: advisory_lock
-- Every migrator of this project serialises on one fixed key for the rest of its transaction.
SELECT pg_advisory_xact_lock(%(key)s);

-- name: record_applied
INSERT INTO nlp_meta.schema_migrations (version, name, checksum, duration_ms)
VALUES (%(version)s, %(name)s, %(checksum)s, %(duration_ms)s);
