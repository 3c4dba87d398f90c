-- database: casebook
-- Batches, clues, leads and their events, users and the audit log: what was
-- published and what people did with it. Rows here are appended and, for
-- leads, updated only through the workflow, which appends an event each time.

CREATE SEQUENCE run_ids START 1;
CREATE SEQUENCE batch_ids START 1;
CREATE SEQUENCE clue_ids START 1;
CREATE SEQUENCE event_ids START 1;
CREATE SEQUENCE user_ids START 1;
CREATE SEQUENCE audit_ids START 1;

-- A pipeline run (运行): from the schedule, the API or the command line.
CREATE TABLE runs (
    run_id      BIGINT PRIMARY KEY,
    trigger     VARCHAR NOT NULL,      -- schedule | api | cli
    started_by  VARCHAR,
    status      VARCHAR NOT NULL,      -- running | succeeded | partial | failed | interrupted
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    batch_id    BIGINT,
    error       VARCHAR
);

-- Each step of a run: discovery, a delivery's load, a model, publish, routing.
CREATE TABLE run_steps (
    run_id      BIGINT NOT NULL,
    step_no     INTEGER NOT NULL,
    name        VARCHAR NOT NULL,
    detail      VARCHAR,
    status      VARCHAR NOT NULL,      -- running | succeeded | failed | skipped
    rows        BIGINT,
    seconds     DOUBLE,
    error       VARCHAR,
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    PRIMARY KEY (run_id, step_no)
);

-- The exact SQL and parameters of every model version ever used, so that
-- any batch can be reproduced.
CREATE TABLE model_versions (
    version     VARCHAR PRIMARY KEY,   -- SHA-256 of the SQL and effective parameters
    model       VARCHAR NOT NULL,
    title       VARCHAR,
    sql         VARCHAR NOT NULL,
    params      VARCHAR NOT NULL,      -- canonical JSON
    first_used  TIMESTAMP NOT NULL
);

-- A published batch (线索批次): immutable.
CREATE TABLE batches (
    batch_id     BIGINT PRIMARY KEY,
    run_id       BIGINT,
    published_at TIMESTAMP NOT NULL,
    clues        BIGINT NOT NULL,
    persons      BIGINT NOT NULL,
    institutions BIGINT NOT NULL,
    settlements  BIGINT NOT NULL,
    total_amount DECIMAL(18,2) NOT NULL,
    fund_amount  DECIMAL(18,2) NOT NULL,
    models       VARCHAR NOT NULL,     -- JSON: [{model, version, flagged, suppressed, clues}]
    deliveries   VARCHAR NOT NULL      -- JSON: the delivery ids loaded when the batch was made
);

-- A clue (线索): one (model, person, institution) among a run's new flags.
CREATE TABLE clues (
    clue_id          BIGINT PRIMARY KEY,
    batch_id         BIGINT NOT NULL,
    model            VARCHAR NOT NULL,
    model_version    VARCHAR NOT NULL,
    severity         VARCHAR NOT NULL,  -- high | medium | low
    score            DOUBLE NOT NULL,
    reasons          VARCHAR NOT NULL,  -- ;-joined
    person_id        VARCHAR NOT NULL,
    person_name      VARCHAR,
    institution_id   VARCHAR NOT NULL,
    institution_name VARCHAR,
    city_code        VARCHAR NOT NULL,  -- where it was routed: a city, or the province (xx0000)
    settlement_count INTEGER NOT NULL,
    settlement_ids   VARCHAR NOT NULL,  -- ;-joined
    first_visit      TIMESTAMP,
    last_visit       TIMESTAMP,
    total_amount     DECIMAL(18,2) NOT NULL,
    fund_amount      DECIMAL(18,2) NOT NULL,
    narrative        VARCHAR NOT NULL,
    evidence         VARCHAR NOT NULL,  -- JSON array, one object per settlement
    follow_up_of     BIGINT
);

-- Every (model, settlement) pair ever issued: a pair is issued at most once.
CREATE TABLE issued (
    model         VARCHAR NOT NULL,
    settlement_id VARCHAR NOT NULL,
    clue_id       BIGINT NOT NULL,
    PRIMARY KEY (model, settlement_id)
);

-- A routed clue is a lead (下发线索) with a workflow; lead_id = clue_id.
CREATE TABLE leads (
    lead_id          BIGINT PRIMARY KEY,
    city_code        VARCHAR NOT NULL,  -- the city that holds it now (province code when returned/unroutable)
    status           VARCHAR NOT NULL,  -- new | accepted | investigating | returned | closed
    outcome          VARCHAR,           -- confirmed | dismissed | referred
    recovered_amount DECIMAL(18,2),
    note             VARCHAR,
    routed_at        TIMESTAMP NOT NULL,
    due_date         DATE NOT NULL,
    updated_at       TIMESTAMP NOT NULL,
    closed_at        TIMESTAMP
);

-- Every change of a lead, with who, when and what; never updated.
CREATE TABLE lead_events (
    event_id         BIGINT PRIMARY KEY,
    lead_id          BIGINT NOT NULL,
    event_at         TIMESTAMP NOT NULL,
    user_id          BIGINT,
    user_name        VARCHAR NOT NULL,
    role             VARCHAR NOT NULL,
    action           VARCHAR NOT NULL,  -- route | accept | investigate | close | return | reassign
    from_status      VARCHAR,
    to_status        VARCHAR NOT NULL,
    city_code        VARCHAR NOT NULL,  -- the lead's city after the event
    outcome          VARCHAR,
    recovered_amount DECIMAL(18,2),
    note             VARCHAR
);

CREATE TABLE users (
    user_id    BIGINT PRIMARY KEY,
    name       VARCHAR NOT NULL,
    role       VARCHAR NOT NULL,        -- province | city | modeler | admin
    city_code  VARCHAR,                 -- for role city
    token_hash VARCHAR NOT NULL UNIQUE, -- SHA-256 of the token; the token itself is shown once
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);

-- Every download and every view of unmasked personal data.
CREATE TABLE audit (
    audit_id  BIGINT PRIMARY KEY,
    event_at  TIMESTAMP NOT NULL,
    user_id   BIGINT,
    user_name VARCHAR NOT NULL,
    role      VARCHAR NOT NULL,
    action    VARCHAR NOT NULL,          -- download | view | suppress | …
    object    VARCHAR NOT NULL,          -- what: batch 7 csv, lead 123, clues?city=620100
    rows      BIGINT NOT NULL,
    detail    VARCHAR
);
