-- database: feeds
-- People as the modelers' sandbox sees them.
--
-- Drafts of models run in a sandbox over a pseudonymized copy of the feeds
-- (jobs/snapshot.go): every person ID there is a keyed token, and the facts
-- a model needs about a person without the ID are columns of their own. The
-- live models read the same columns here, so that a draft that goes live
-- runs unchanged.

-- 出生年份, 性别, 身份证地址码: what the ID number says, as columns. The
-- loader fills them from the normalized ID (jobs/checks.go).
ALTER TABLE settlements ADD COLUMN id_region VARCHAR;
ALTER TABLE settlements ADD COLUMN birth_year INTEGER;
ALTER TABLE settlements ADD COLUMN sex VARCHAR;
ALTER TABLE residents ADD COLUMN id_region VARCHAR;
ALTER TABLE residents ADD COLUMN birth_year INTEGER;
ALTER TABLE residents ADD COLUMN sex VARCHAR;

UPDATE settlements SET id_region = substr(person_id, 1, 6), birth_year = CAST(substr(person_id, 7, 4) AS INTEGER),
    sex = CASE WHEN CAST(substr(person_id, 17, 1) AS INTEGER) % 2 = 1 THEN 'M' ELSE 'F' END
WHERE person_id IS NOT NULL;
UPDATE residents SET id_region = substr(person_id, 1, 6), birth_year = CAST(substr(person_id, 7, 4) AS INTEGER),
    sex = CASE WHEN CAST(substr(person_id, 17, 1) AS INTEGER) % 2 = 1 THEN 'M' ELSE 'F' END
WHERE person_id IS NOT NULL;

-- The identity vault: each person's token in the sandbox, HMAC-SHA-256 of
-- the ID under a key kept outside the store. Only this database (never the
-- sandbox) holds the two side by side, so that only publishing and readers
-- allowed clear data can turn a token back into a person.
CREATE TABLE pseudonyms (
    person_id VARCHAR NOT NULL,
    token     VARCHAR NOT NULL
);

-- Which key made the tokens above (a fingerprint, never the key): another
-- key means every token is made again.
CREATE TABLE pseudonym_key (
    key_id     VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
);
