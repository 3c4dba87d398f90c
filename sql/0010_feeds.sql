-- database: feeds
-- What each delivery changed, so that a run re-examines only what the
-- deliveries loaded since the last published batch can affect
-- (jobs/scope.go).
--
-- A loaded row names its delivery (delivery_id), so the rows a delivery
-- added or replaced are found by it. What a replaced row said is gone with
-- it: when a re-delivered record moves to another person (a settlement or a
-- location record corrected to the right ID), the person it left is kept
-- here, for that person's verdicts may change too.
CREATE TABLE delivery_left (
    delivery_id BIGINT NOT NULL,
    feed        VARCHAR NOT NULL,
    person_id   VARCHAR NOT NULL
);

-- A delivery's files as the file system describes them (name, size,
-- modification time and inode of each), so that a delivery seen before is
-- recognized without reading its files again for the SHA-256: the inbox
-- keeps every delivery, and a night should not pay for hashing the year.
ALTER TABLE deliveries ADD COLUMN files_stat VARCHAR;

-- Which copy of the feeds this is. A feeds file rebuilt from the deliveries
-- numbers them anew, so what the casebook says was examined would name
-- other deliveries: a run on another copy examines everything.
CREATE TABLE feeds_identity (
    id         VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
);
INSERT INTO feeds_identity VALUES (CAST(uuid() AS VARCHAR), CAST(current_localtimestamp() AS TIMESTAMP));
