// This file reads which schema a store's files are at, without writing
// anything, so that a store written by a newer collider is refused before
// this binary touches it: not a file changed, not a log created.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/duckdb/duckdb-go/v2"

	schema "collider/sql"
)

// Schema is where a store's databases stand: the newest migration applied
// to each, and the DuckDB that applied it.
type Schema struct {
	Feeds    Level `json:"feeds"`
	Casebook Level `json:"casebook"`
}

// Level is one database's newest migration.
type Level struct {
	Version   int    `json:"version"`             // its number; 0 for none
	Migration string `json:"migration,omitempty"` // its file name
	DuckDB    string `json:"duckdb_version,omitempty"`
}

func (l Level) String() string {
	if l.Version == 0 {
		return "schema 0 (empty)"
	}
	s := fmt.Sprintf("schema %d (%s", l.Version, l.Migration)
	if l.DuckDB != "" {
		s += ", DuckDB " + l.DuckDB
	}
	return s + ")"
}

func (sc Schema) level(db string) Level {
	if db == Casebook {
		return sc.Casebook
	}
	return sc.Feeds
}

// Known is the schema this binary writes: its newest migration per database.
func Known() Schema {
	ms, err := loadMigrations(schema.Files)
	if err != nil {
		panic(err) // the embedded migrations are checked by every test that opens a store
	}
	var sc Schema
	for _, m := range ms {
		l := Level{Version: m.version, Migration: m.name, DuckDB: DuckDBVersion()}
		if m.database == Casebook {
			sc.Casebook = l
		} else {
			sc.Feeds = l
		}
	}
	return sc
}

// NewerThan names the first database at which sc is ahead of known, or "".
func (sc Schema) NewerThan(known Schema) string {
	for _, db := range []string{Feeds, Casebook} {
		if sc.level(db).Version > known.level(db).Version {
			return db
		}
	}
	return ""
}

// NewerError is the refusal of a store (or a backup) written by a newer
// collider, naming both versions.
func NewerError(what string, sc Schema, db string) error {
	return fmt.Errorf("%s: %w: its %s database is at %s, and this collider knows only up to %s; use a collider that knows %s or later — nothing was changed",
		what, ErrNewerStore, db, sc.level(db), Known().level(db), sc.level(db).Migration)
}

// DuckDBVersion is the version of the embedded DuckDB, e.g. v1.5.6.
var DuckDBVersion = sync.OnceValue(func() string {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return "unknown"
	}
	defer db.Close()
	v := "unknown"
	db.QueryRow("SELECT version()").Scan(&v)
	return v
})

// Inspect reads the schema of the store in dir without writing to it: the
// two files are attached read-only to a throwaway in-memory DuckDB. A file
// that does not exist reads as schema 0. A file in a newer DuckDB storage
// format is ErrNewerStore, naming the DuckDB this binary embeds.
func Inspect(ctx context.Context, dir string) (Schema, error) {
	var sc Schema
	connector, err := duckdb.NewConnector("", nil)
	if err != nil {
		return sc, err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return sc, err
	}
	defer conn.Close()
	for _, name := range []string{Feeds, Casebook} {
		path := filepath.Join(dir, name+".duckdb")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		alias := "inspect_" + name
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("ATTACH '%s' AS %s (READ_ONLY)", sqlString(path), alias)); err != nil {
			if strings.Contains(err.Error(), "newer") || strings.Contains(err.Error(), "storage version") {
				return sc, fmt.Errorf("store %s: %w: %s was written by a newer DuckDB than the %s this collider embeds: %v — nothing was changed",
					dir, ErrNewerStore, path, DuckDBVersion(), err)
			}
			return sc, openError(dir, path, err)
		}
		var has bool
		if err := conn.QueryRowContext(ctx, `SELECT count(*) > 0 FROM duckdb_tables() WHERE database_name = ? AND table_name = 'schema_migrations'`, alias).Scan(&has); err != nil {
			return sc, err
		}
		var l Level
		if has {
			err := conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT version, name, duckdb_version FROM %s.schema_migrations ORDER BY version DESC LIMIT 1`, alias)).
				Scan(&l.Version, &l.Migration, &l.DuckDB)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return sc, fmt.Errorf("store %s: %s: %w", dir, path, err)
			}
		}
		if name == Casebook {
			sc.Casebook = l
		} else {
			sc.Feeds = l
		}
		if _, err := conn.ExecContext(ctx, "DETACH "+alias); err != nil {
			return sc, err
		}
	}
	return sc, nil
}
