-- database: casebook
-- store_info was never written: what a store is and which collider wrote it
-- is in schema_migrations (each migration with the DuckDB version that
-- applied it).
DROP TABLE store_info;
