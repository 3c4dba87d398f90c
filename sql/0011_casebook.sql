-- database: casebook
-- What each model of a published batch had examined, written in the
-- batch's own transaction, so that the next run re-examines only what
-- changed since (jobs/scope.go) and a killed run changes nothing here. The
-- deliveries examined are the batch's (batches.deliveries: every delivery
-- loaded when its models started). A model runs in full when its version,
-- the regions or the copy of the feeds differ from its newest record, or
-- when it has none.
CREATE TABLE examined (
    batch_id     BIGINT NOT NULL,
    model        VARCHAR NOT NULL,
    version      VARCHAR NOT NULL,
    scope        VARCHAR NOT NULL,   -- how this batch examined it: full | person
    persons      BIGINT,             -- persons re-examined, when by person
    feeds        VARCHAR NOT NULL,   -- feeds_identity.id of the feeds it read
    regions      VARCHAR NOT NULL,   -- SHA-256 of the region table it read
    suppressions VARCHAR NOT NULL,   -- JSON: ids of the suppressions active when it ran
    PRIMARY KEY (batch_id, model)
);
