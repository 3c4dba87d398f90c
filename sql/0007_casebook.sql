-- database: casebook
-- The model lifecycle (模型管理): a modeler submits a draft — other SQL
-- and/or other parameters — with a note, and its preview is frozen then;
-- the province approves or rejects it with a reason; an approved version is
-- live from the next run, and any version that was live can be made live
-- again. Drafts are never deleted, and every step is an event.

CREATE SEQUENCE model_draft_ids START 1;
CREATE SEQUENCE model_event_ids START 1;

-- A version of a model as submitted (or as shipped with collider).
CREATE TABLE model_drafts (
    draft_id        BIGINT PRIMARY KEY,
    model           VARCHAR NOT NULL,
    version         VARCHAR NOT NULL,  -- SHA-256 of the text and the effective parameters
    base_version    VARCHAR,           -- the live version when it was submitted
    text            VARCHAR NOT NULL,  -- the model file
    file            VARCHAR NOT NULL,  -- its name, for errors
    params          VARCHAR NOT NULL,  -- the overrides of the file's defaults, canonical JSON
    tests_file      VARCHAR,
    tests           VARCHAR,           -- the fixture cases it was tested with
    source          VARCHAR NOT NULL,  -- api | cli | file | shipped
    note            VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,  -- pending | approved | rejected | shipped
    tests_passed    BOOLEAN NOT NULL,
    preview         VARCHAR,           -- JSON, frozen at submission (people as tokens)
    submitted_by    VARCHAR NOT NULL,
    submitted_by_id BIGINT,
    submitted_at    TIMESTAMP NOT NULL,
    decided_by      VARCHAR,
    decided_by_id   BIGINT,
    decided_at      TIMESTAMP,
    decision        VARCHAR,           -- the province's note or reason
    CHECK (status IN ('pending', 'approved', 'rejected', 'shipped'))
);

-- The model's history: every submission, decision and change of the live
-- version, with who, when, the note and the version.
CREATE TABLE model_events (
    event_id  BIGINT PRIMARY KEY,
    model     VARCHAR NOT NULL,
    action    VARCHAR NOT NULL,        -- ship | submit | approve | reject | rollback
    version   VARCHAR NOT NULL,
    draft_id  BIGINT,
    user_id   BIGINT,
    user_name VARCHAR NOT NULL,
    role      VARCHAR NOT NULL,
    event_at  TIMESTAMP NOT NULL,
    note      VARCHAR,
    live      BOOLEAN NOT NULL,        -- whether this event made its version live
    CHECK (action IN ('ship', 'submit', 'approve', 'reject', 'rollback'))
);
