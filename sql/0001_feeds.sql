-- database: feeds
-- The bulk feed tables, the delivery ledger and its rejects, and the reference
-- regions. Everything here can be dropped and reloaded from the deliveries
-- without touching the casebook.

-- Reference divisions (GB/T 2260) with the point of each seat; seeded by the
-- store from regions/regions.csv.
CREATE TABLE regions (
    code     VARCHAR PRIMARY KEY,
    name     VARCHAR NOT NULL,
    level    VARCHAR NOT NULL,
    parent   VARCHAR,
    province VARCHAR,
    city     VARCHAR,
    lon      DOUBLE,
    lat      DOUBLE
);

-- Every 6-digit code of a known province, resolved county → city → province,
-- so that feeds and models find a region's point with one equi-join.
CREATE TABLE region_lookup (
    code      VARCHAR PRIMARY KEY,
    resolved  VARCHAR NOT NULL,
    city_code VARCHAR NOT NULL,
    lon       DOUBLE,
    lat       DOUBLE
);

CREATE SEQUENCE delivery_ids START 1;

-- The delivery ledger: one row per delivery seen, loaded or failed.
CREATE TABLE deliveries (
    delivery_id   BIGINT PRIMARY KEY,
    feed          VARCHAR NOT NULL,
    name          VARCHAR NOT NULL,
    path          VARCHAR NOT NULL,
    sha256        VARCHAR NOT NULL,
    status        VARCHAR NOT NULL,  -- loaded | failed
    files         INTEGER NOT NULL,
    rows_read     BIGINT NOT NULL,
    loaded        BIGINT NOT NULL,
    rejected      BIGINT NOT NULL,   -- rows with at least one reject
    replaced      BIGINT NOT NULL,   -- earlier rows replaced by this delivery's rows
    extra_columns VARCHAR,           -- columns the contract does not know, ignored
    error         VARCHAR,
    started_at    TIMESTAMP NOT NULL,
    finished_at   TIMESTAMP NOT NULL,
    seconds       DOUBLE NOT NULL
);

-- Bad cells of loaded deliveries: one row per (row, column, reason).
CREATE TABLE rejects (
    delivery_id BIGINT NOT NULL,
    file        VARCHAR NOT NULL,
    row_number  BIGINT NOT NULL,    -- 1-based row in the file
    column_name VARCHAR NOT NULL,
    reason      VARCHAR NOT NULL,
    raw_value   VARCHAR
);

-- Feed tables: contract columns, normalized, plus derived columns the models
-- use (points resolved from region codes, city codes). Keys are kept unique
-- by the loader rather than by an index: an index over tens of millions of
-- rows costs more memory than the machine should spend on it.
CREATE TABLE institutions (
    institution_id VARCHAR NOT NULL,
    name           VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,
    region_code    VARCHAR NOT NULL,
    lat            DOUBLE,
    lon            DOUBLE,
    city_code      VARCHAR NOT NULL,
    point_lat      DOUBLE,           -- lat, else the region's seat
    point_lon      DOUBLE,
    delivery_id    BIGINT NOT NULL
);

CREATE TABLE residents (
    person_id    VARCHAR NOT NULL,
    name         VARCHAR,
    hukou_region VARCHAR NOT NULL,
    birth_date   DATE,
    hukou_city   VARCHAR NOT NULL,
    hukou_lat    DOUBLE,             -- seat of the hukou region
    hukou_lon    DOUBLE,
    delivery_id  BIGINT NOT NULL
);

CREATE TABLE civil_status (
    person_id   VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,
    death_date  DATE,
    updated_at  TIMESTAMP,
    delivery_id BIGINT NOT NULL
);

CREATE TABLE floating (
    person_id   VARCHAR NOT NULL,
    region_code VARCHAR NOT NULL,
    valid_from  DATE NOT NULL,
    valid_to    DATE,
    city_code   VARCHAR NOT NULL,
    delivery_id BIGINT NOT NULL
);

CREATE TABLE locations (
    event_id    VARCHAR NOT NULL,
    person_id   VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,
    start_time  TIMESTAMP NOT NULL,
    end_time    TIMESTAMP,
    region_code VARCHAR,
    lat         DOUBLE,
    lon         DOUBLE,
    city_code   VARCHAR,
    point_lat   DOUBLE,              -- lat, else the region's seat; null for abroad
    point_lon   DOUBLE,
    delivery_id BIGINT NOT NULL
);

CREATE TABLE settlements (
    settlement_id  VARCHAR NOT NULL,
    person_id      VARCHAR NOT NULL,
    person_name    VARCHAR,
    institution_id VARCHAR NOT NULL,
    visit_type     VARCHAR NOT NULL,
    visit_start    TIMESTAMP NOT NULL,
    visit_end      TIMESTAMP,
    settled_at     TIMESTAMP NOT NULL,
    total_amount   DECIMAL(18,2) NOT NULL,
    fund_amount    DECIMAL(18,2) NOT NULL,
    insured_region VARCHAR,
    delivery_id    BIGINT NOT NULL
);

-- 公民身份号码 (GB 11643-1999), in two steps the loader applies column by
-- column (a nested macro would evaluate its argument many times per row):
-- person_id_first17 takes the trimmed, upper-cased text and gives the 17 digits
-- before the check character (15-digit legacy IDs get '19' inserted), and
-- person_id_check gives the check character of those 17 digits.
-- personid.Normalize is the Go twin; a loader test keeps the two in step.
CREATE MACRO person_id_first17(s) AS CASE
    WHEN length(s) = 18 AND regexp_full_match(s, '[0-9]{17}[0-9X]') THEN substr(s, 1, 17)
    WHEN length(s) = 15 AND regexp_full_match(s, '[0-9]{15}') THEN substr(s, 1, 6) || '19' || substr(s, 7, 9)
END;

-- The same check character from the 17 digits as a number: integer
-- arithmetic, several times cheaper than 17 substrings over tens of millions of rows.
CREATE MACRO person_id_check_n(n) AS substr('10X98765432', 1 + CAST((
    (n // 10000000000000000) % 10 * 7 + (n // 1000000000000000) % 10 * 9 + (n // 100000000000000) % 10 * 10
  + (n // 10000000000000) % 10 * 5 + (n // 1000000000000) % 10 * 8 + (n // 100000000000) % 10 * 4
  + (n // 10000000000) % 10 * 2 + (n // 1000000000) % 10 * 1 + (n // 100000000) % 10 * 6
  + (n // 10000000) % 10 * 3 + (n // 1000000) % 10 * 7 + (n // 100000) % 10 * 9
  + (n // 10000) % 10 * 10 + (n // 1000) % 10 * 5 + (n // 100) % 10 * 8
  + (n // 10) % 10 * 4 + (n // 1) % 10 * 2
  ) % 11 AS INTEGER), 1);

CREATE MACRO person_id_check(d) AS substr('10X98765432', 1 + ((
      (ascii(d[1])  - 48) * 7 + (ascii(d[2])  - 48) * 9 + (ascii(d[3])  - 48) * 10
    + (ascii(d[4])  - 48) * 5 + (ascii(d[5])  - 48) * 8 + (ascii(d[6])  - 48) * 4
    + (ascii(d[7])  - 48) * 2 + (ascii(d[8])  - 48) * 1 + (ascii(d[9])  - 48) * 6
    + (ascii(d[10]) - 48) * 3 + (ascii(d[11]) - 48) * 7 + (ascii(d[12]) - 48) * 9
    + (ascii(d[13]) - 48) * 10 + (ascii(d[14]) - 48) * 5 + (ascii(d[15]) - 48) * 8
    + (ascii(d[16]) - 48) * 4 + (ascii(d[17]) - 48) * 2) % 11), 1);

-- Great-circle distance in km (haversine, earth radius 6371 km), as the spec defines it.
CREATE MACRO haversine_km(lat1, lon1, lat2, lon2) AS
    2 * 6371 * asin(least(1, sqrt(
        power(sin(radians(lat2 - lat1) / 2), 2)
      + cos(radians(lat1)) * cos(radians(lat2)) * power(sin(radians(lon2 - lon1) / 2), 2))));

-- The city (地级) of a division code.
CREATE MACRO city_of(code) AS substr(code, 1, 4) || '00';
