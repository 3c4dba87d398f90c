-- database: casebook
-- The system of record: what was published and what people did with it.
-- Nothing here is derived from feeds after the fact; it survives a reload of
-- the feeds file.

CREATE TABLE store_info (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
