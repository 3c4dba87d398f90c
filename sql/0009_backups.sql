-- database: casebook
-- Backups taken of the store (collider backup, POST /api/v1/backups, the
-- backup schedule): when, by whom, into which file, how big, and whether
-- they succeeded, so that an operator sees that the scheduled ones work.
-- A backup's own row is written after its copy was taken, so it is not in it.

CREATE SEQUENCE backup_ids START 1;

CREATE TABLE backups (
    backup_id   BIGINT PRIMARY KEY,
    trigger     VARCHAR NOT NULL,   -- schedule | api | cli
    started_by  VARCHAR,
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    status      VARCHAR NOT NULL,   -- succeeded | failed
    file        VARCHAR,            -- the file written; null when streamed to a client
    bytes       BIGINT NOT NULL,
    sha256      VARCHAR,            -- of the whole backup file
    manifest    VARCHAR,            -- JSON: schema, rows per table, each file with its SHA-256
    error       VARCHAR
);
