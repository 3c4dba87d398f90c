-- database: casebook
-- Suppressions (白名单/暂缓): a person, an institution, or a (model, person)
-- pair whose flagged settlements are not issued while the suppression holds,
-- for instance after a bureau found that a death date in the police feed was
-- wrong. A suppression is never deleted: it expires or is revoked, so that
-- every one stays listed and audited. The runner (models/runner.go) skips
-- settlements covered by an active one and counts them.

CREATE SEQUENCE suppression_ids START 1;

CREATE TABLE suppressions (
    id             BIGINT PRIMARY KEY,
    kind           VARCHAR NOT NULL,      -- person | institution | model_person
    model          VARCHAR,               -- model_person only
    person_id      VARCHAR,               -- person and model_person
    institution_id VARCHAR,               -- institution only
    reason         VARCHAR NOT NULL,
    created_by     VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL,    -- China Standard Time wall clock, like every time here
    expires_at     TIMESTAMP,             -- null: until revoked
    revoked_at     TIMESTAMP,
    revoked_by     VARCHAR,
    CHECK (kind IN ('person', 'institution', 'model_person')),
    CHECK ((kind = 'person'       AND person_id IS NOT NULL AND institution_id IS NULL AND model IS NULL)
        OR (kind = 'institution'  AND institution_id IS NOT NULL AND person_id IS NULL AND model IS NULL)
        OR (kind = 'model_person' AND model IS NOT NULL AND person_id IS NOT NULL AND institution_id IS NULL))
);
