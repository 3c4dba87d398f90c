// Package schema ships the store's schema as numbered migration files
// (NNNN_name.sql). Each file starts with a line `-- database: feeds` or
// `-- database: casebook` naming the DuckDB file it belongs to; the store
// applies each file once, in order, and records it in that database.
package schema

import "embed"

// Files holds the migrations.
//
//go:embed *.sql
var Files embed.FS
