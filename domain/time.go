package domain

import "time"

// ChinaTime is China Standard Time (UTC+8, no daylight saving): every time
// in the store is a wall-clock time there, and a fixed zone needs no tz
// database.
var ChinaTime = time.FixedZone("CST", 8*3600)

// Wall reads a TIMESTAMP from the store, which the driver returns as UTC, as
// the China Standard Time wall-clock time it is.
func Wall(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), ChinaTime)
}

// WallPtr is Wall for an optional time.
func WallPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	w := Wall(*t)
	return &w
}

// DBTime is how a time is bound as a parameter: its China Standard Time
// wall clock as text. duckdb-go binds a time.Time as an instant in some
// statement shapes (INSERT … SELECT ?) and as a UTC wall clock in others
// (VALUES (?)); text is read the same way in every shape.
func DBTime(t time.Time) string { return t.In(ChinaTime).Format("2006-01-02 15:04:05.000000") }

// AppenderTime is how a time goes in through DuckDB's appender, which
// writes a time.Time's UTC wall clock: its China Standard Time wall clock,
// labelled UTC, to the microsecond.
func AppenderTime(t time.Time) time.Time {
	w := t.In(ChinaTime)
	return time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), time.UTC).Truncate(time.Microsecond)
}
