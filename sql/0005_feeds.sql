-- database: feeds
-- One pass over a delivery, and lineage.
--
-- The loader reads each file once and writes every row into its feed table,
-- typed, with source_row negative for a row with a bad cell; in the same
-- transaction it records the bad cells as rejects (reading again only a file
-- that has any) and deletes those rows. A committed feed table never holds a
-- rejected row, but while a delivery loads, its contract columns take NULLs.
-- (A WHERE NOT bad filter instead would be pushed by DuckDB below the typed
-- values and compute each of them twice.)

ALTER TABLE institutions ALTER COLUMN institution_id DROP NOT NULL;
ALTER TABLE institutions ALTER COLUMN name DROP NOT NULL;
ALTER TABLE institutions ALTER COLUMN kind DROP NOT NULL;
ALTER TABLE institutions ALTER COLUMN region_code DROP NOT NULL;
ALTER TABLE institutions ALTER COLUMN city_code DROP NOT NULL;
ALTER TABLE residents ALTER COLUMN person_id DROP NOT NULL;
ALTER TABLE residents ALTER COLUMN hukou_region DROP NOT NULL;
ALTER TABLE residents ALTER COLUMN hukou_city DROP NOT NULL;
ALTER TABLE civil_status ALTER COLUMN person_id DROP NOT NULL;
ALTER TABLE civil_status ALTER COLUMN status DROP NOT NULL;
ALTER TABLE floating ALTER COLUMN person_id DROP NOT NULL;
ALTER TABLE floating ALTER COLUMN region_code DROP NOT NULL;
ALTER TABLE floating ALTER COLUMN valid_from DROP NOT NULL;
ALTER TABLE floating ALTER COLUMN city_code DROP NOT NULL;
ALTER TABLE locations ALTER COLUMN event_id DROP NOT NULL;
ALTER TABLE locations ALTER COLUMN person_id DROP NOT NULL;
ALTER TABLE locations ALTER COLUMN kind DROP NOT NULL;
ALTER TABLE locations ALTER COLUMN start_time DROP NOT NULL;
ALTER TABLE settlements ALTER COLUMN settlement_id DROP NOT NULL;
ALTER TABLE settlements ALTER COLUMN person_id DROP NOT NULL;
ALTER TABLE settlements ALTER COLUMN institution_id DROP NOT NULL;
ALTER TABLE settlements ALTER COLUMN visit_type DROP NOT NULL;
ALTER TABLE settlements ALTER COLUMN visit_start DROP NOT NULL;
ALTER TABLE settlements ALTER COLUMN settled_at DROP NOT NULL;
ALTER TABLE settlements ALTER COLUMN total_amount DROP NOT NULL;
ALTER TABLE settlements ALTER COLUMN fund_amount DROP NOT NULL;

-- Lineage: every loaded row names its delivery and its row within the
-- delivery (1-based, files in load order: file 2's first row follows file
-- 1's last), so an investigator can cite the source record and a key
-- repeated inside a delivery resolves to the later row. delivery_files maps
-- a source_row back to its file and the row in that file.
ALTER TABLE institutions ADD COLUMN source_row BIGINT;
ALTER TABLE residents ADD COLUMN source_row BIGINT;
ALTER TABLE civil_status ADD COLUMN source_row BIGINT;
ALTER TABLE floating ADD COLUMN source_row BIGINT;
ALTER TABLE locations ADD COLUMN source_row BIGINT;
ALTER TABLE settlements ADD COLUMN source_row BIGINT;

-- The files of each loaded delivery, in load order (a later file's rows win).
CREATE TABLE delivery_files (
    delivery_id BIGINT NOT NULL,
    file_index  INTEGER NOT NULL,   -- 0-based, in load order
    file        VARCHAR NOT NULL,   -- base name, as rejects name it
    path        VARCHAR NOT NULL,
    rows_read   BIGINT NOT NULL,    -- rows in the file's footer
    first_row   BIGINT NOT NULL,    -- source_row of the file's first row
    PRIMARY KEY (delivery_id, file_index)
);

-- Cheaper normalization, measured on generated provinces (each step is a
-- vectorized pass over tens of millions of values, so fewer passes matter).
-- The old two-step macros go; personid.Normalize stays the Go twin, and a
-- loader test keeps the two in step.
DROP MACRO person_id_first17;
DROP MACRO person_id_check_n;
DROP MACRO person_id_check;

-- Text as the feeds mean it: spaces trimmed, empty as missing. The LIKE
-- tests are prefix/suffix checks that leave a clean value uncopied.
CREATE MACRO clean_text(s) AS nullif(CASE WHEN s LIKE ' %' OR s LIKE '% ' THEN trim(s) ELSE s END, '');

-- A person ID's cleaned text: trimmed, and a trailing x upper-cased (the one
-- letter an ID may carry; any other letter makes it invalid either way).
CREATE MACRO person_id_clean(s) AS CASE WHEN s LIKE ' %' OR s LIKE '% ' OR s LIKE '%x' THEN nullif(upper(trim(s)), '') ELSE nullif(s, '') END;

-- The 17 digits before the check character as a number, or NULL: an
-- 18-character ID as it is, a 15-digit legacy ID with '19' inserted before
-- its two-digit birth year (AAAAAA YYMMDD SSS → AAAAAA 19YYMMDD SSS).
CREATE MACRO person_id_digits(s) AS CASE
    WHEN length(s) = 18 AND regexp_full_match(s, '[0-9]{17}[0-9X]') THEN CAST(substr(s, 1, 17) AS BIGINT)
    WHEN length(s) = 15 AND regexp_full_match(s, '[0-9]{15}')
        THEN CAST(s AS BIGINT) // 1000000000 * 100000000000 + 19000000000 + CAST(s AS BIGINT) % 1000000000
END;

-- The check character of those 17 digits (GB 11643-1999: the digits times
-- the weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2, modulo 11, index
-- '10X98765432'). The weight of the k-th digit from the right is 2^k modulo
-- 11, so a group of three digits c (c0 its units) at group position j
-- weighs 8^j · (2·c0 + 4·c1 + 8·c2): person_id_group11 holds that bracket
-- modulo 11 for every c from 000 to 999, and the check index is six
-- lookups, six group extractions and a weighted sum (8^j modulo 11 is
-- 1, 8, 9, 6, 4, 10) — about half the operations of working digit by digit,
-- which over tens of millions of rows is what counts.
CREATE MACRO person_id_group11() AS [
    0,2,4,6,8,10,1,3,5,7,4,6,8,10,1,3,5,7,9,0,8,10,1,3,5,7,9,0,2,4,1,3,5,7,9,0,2,4,6,8,5,7,9,0,2,4,
    6,8,10,1,9,0,2,4,6,8,10,1,3,5,2,4,6,8,10,1,3,5,7,9,6,8,10,1,3,5,7,9,0,2,10,1,3,5,7,9,0,2,4,6,3,
    5,7,9,0,2,4,6,8,10,8,10,1,3,5,7,9,0,2,4,1,3,5,7,9,0,2,4,6,8,5,7,9,0,2,4,6,8,10,1,9,0,2,4,6,8,10,
    1,3,5,2,4,6,8,10,1,3,5,7,9,6,8,10,1,3,5,7,9,0,2,10,1,3,5,7,9,0,2,4,6,3,5,7,9,0,2,4,6,8,10,7,9,0,
    2,4,6,8,10,1,3,0,2,4,6,8,10,1,3,5,7,5,7,9,0,2,4,6,8,10,1,9,0,2,4,6,8,10,1,3,5,2,4,6,8,10,1,3,5,
    7,9,6,8,10,1,3,5,7,9,0,2,10,1,3,5,7,9,0,2,4,6,3,5,7,9,0,2,4,6,8,10,7,9,0,2,4,6,8,10,1,3,0,2,4,6,
    8,10,1,3,5,7,4,6,8,10,1,3,5,7,9,0,8,10,1,3,5,7,9,0,2,4,2,4,6,8,10,1,3,5,7,9,6,8,10,1,3,5,7,9,0,
    2,10,1,3,5,7,9,0,2,4,6,3,5,7,9,0,2,4,6,8,10,7,9,0,2,4,6,8,10,1,3,0,2,4,6,8,10,1,3,5,7,4,6,8,10,
    1,3,5,7,9,0,8,10,1,3,5,7,9,0,2,4,1,3,5,7,9,0,2,4,6,8,5,7,9,0,2,4,6,8,10,1,10,1,3,5,7,9,0,2,4,6,
    3,5,7,9,0,2,4,6,8,10,7,9,0,2,4,6,8,10,1,3,0,2,4,6,8,10,1,3,5,7,4,6,8,10,1,3,5,7,9,0,8,10,1,3,5,
    7,9,0,2,4,1,3,5,7,9,0,2,4,6,8,5,7,9,0,2,4,6,8,10,1,9,0,2,4,6,8,10,1,3,5,2,4,6,8,10,1,3,5,7,9,7,
    9,0,2,4,6,8,10,1,3,0,2,4,6,8,10,1,3,5,7,4,6,8,10,1,3,5,7,9,0,8,10,1,3,5,7,9,0,2,4,1,3,5,7,9,0,2,
    4,6,8,5,7,9,0,2,4,6,8,10,1,9,0,2,4,6,8,10,1,3,5,2,4,6,8,10,1,3,5,7,9,6,8,10,1,3,5,7,9,0,2,10,1,
    3,5,7,9,0,2,4,6,4,6,8,10,1,3,5,7,9,0,8,10,1,3,5,7,9,0,2,4,1,3,5,7,9,0,2,4,6,8,5,7,9,0,2,4,6,8,
    10,1,9,0,2,4,6,8,10,1,3,5,2,4,6,8,10,1,3,5,7,9,6,8,10,1,3,5,7,9,0,2,10,1,3,5,7,9,0,2,4,6,3,5,7,
    9,0,2,4,6,8,10,7,9,0,2,4,6,8,10,1,3,1,3,5,7,9,0,2,4,6,8,5,7,9,0,2,4,6,8,10,1,9,0,2,4,6,8,10,1,3,
    5,2,4,6,8,10,1,3,5,7,9,6,8,10,1,3,5,7,9,0,2,10,1,3,5,7,9,0,2,4,6,3,5,7,9,0,2,4,6,8,10,7,9,0,2,4,
    6,8,10,1,3,0,2,4,6,8,10,1,3,5,7,4,6,8,10,1,3,5,7,9,0,9,0,2,4,6,8,10,1,3,5,2,4,6,8,10,1,3,5,7,9,
    6,8,10,1,3,5,7,9,0,2,10,1,3,5,7,9,0,2,4,6,3,5,7,9,0,2,4,6,8,10,7,9,0,2,4,6,8,10,1,3,0,2,4,6,8,
    10,1,3,5,7,4,6,8,10,1,3,5,7,9,0,8,10,1,3,5,7,9,0,2,4,1,3,5,7,9,0,2,4,6,8,6,8,10,1,3,5,7,9,0,2,
    10,1,3,5,7,9,0,2,4,6,3,5,7,9,0,2,4,6,8,10,7,9,0,2,4,6,8,10,1,3,0,2,4,6,8,10,1,3,5,7,4,6,8,10,1,
    3,5,7,9,0,8,10,1,3,5,7,9,0,2,4,1,3,5,7,9,0,2,4,6,8,5,7,9,0,2,4,6,8,10,1,9,0,2,4,6,8,10,1,3,5];

CREATE MACRO person_id_check_index(n) AS CAST((
      person_id_group11()[n % 1000 + 1]
    + 8 * person_id_group11()[n // 1000 % 1000 + 1]
    + 9 * person_id_group11()[n // 1000000 % 1000 + 1]
    + 6 * person_id_group11()[n // 1000000000 % 1000 + 1]
    + 4 * person_id_group11()[n // 1000000000000 % 1000 + 1]
    + 10 * person_id_group11()[n // 1000000000000000 + 1]) % 11 AS INTEGER);

-- The check character itself, from its index.
CREATE MACRO person_id_check(n) AS ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'][person_id_check_index(n) + 1];

-- Whether an integer YYYYMMDD is a real date (Gregorian, years 0000–9999,
-- as Go's time.Parse("20060102") reads it).
CREATE MACRO is_yyyymmdd(d) AS d // 100 % 100 BETWEEN 1 AND 12 AND d % 100 BETWEEN 1 AND CASE d // 100 % 100
    WHEN 2 THEN CASE WHEN (d // 10000 % 4 = 0 AND d // 10000 % 100 <> 0) OR d // 10000 % 400 = 0 THEN 29 ELSE 28 END
    WHEN 4 THEN 30 WHEN 6 THEN 30 WHEN 9 THEN 30 WHEN 11 THEN 30
    ELSE 31 END;
