// This file keeps the live models: the versions that runs use. A model
// replaces its live version only after it validates; a refused file leaves
// the live version running.
package models

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"sync"
)

//go:embed *.sql *.test.yaml
var embedded embed.FS

// Embedded returns the models that ship with collider.
func Embedded() fs.FS { return embedded }

// Catalog holds the live models by name. It is safe for concurrent use: a
// run reads it while a modeler's directory is reloaded.
type Catalog struct {
	mu   sync.RWMutex
	live map[string]*Model
	Log  *slog.Logger
}

// NewCatalog returns an empty catalog.
func NewCatalog() *Catalog { return &Catalog{live: map[string]*Model{}} }

// Reload reads the models of fsys, validates them with t, and makes each
// valid one live. Every refused file is returned in a *LoadError with its
// file and line; its live version, if any, keeps running.
func (c *Catalog) Reload(ctx context.Context, fsys fs.FS, t *Tester) error {
	ms, loadErr := Load(fsys)
	var refused []*FileError
	var le *LoadError
	if errors.As(loadErr, &le) {
		refused = append(refused, le.Refused...)
	} else if loadErr != nil {
		return loadErr
	}
	verdicts, err := t.Validate(ctx, ms...)
	if err != nil {
		return err
	}
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	c.mu.Lock()
	for _, v := range verdicts {
		if v.Err != nil {
			refused = append(refused, asFileError(v.Model.File, v.Err))
			if _, ok := c.live[v.Model.Name]; ok {
				log.Warn("model refused; the live version keeps running", "model", v.Model.Name, "err", v.Err)
			} else {
				log.Warn("model refused", "model", v.Model.Name, "err", v.Err)
			}
			continue
		}
		c.live[v.Model.Name] = v.Model
	}
	c.mu.Unlock()
	if len(refused) > 0 {
		return &LoadError{Refused: refused}
	}
	return nil
}

// Set makes models live without validating them: for models already
// validated (the embedded ones, tested in CI) when start-up time matters.
func (c *Catalog) Set(ms ...*Model) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range ms {
		c.live[m.Name] = m
	}
}

// Models returns the live models by name.
func (c *Catalog) Models() []*Model {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*Model, 0, len(c.live))
	for _, m := range c.live {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Model returns the live model of that name.
func (c *Catalog) Model(name string) (*Model, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m, ok := c.live[name]
	if !ok {
		names := make([]string, 0, len(c.live))
		for n := range c.live {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("no model %q (models: %v): %w", name, names, ErrNotFound)
	}
	return m, nil
}

// ErrNotFound is returned for a model name the catalog does not hold.
var ErrNotFound = errors.New("model not found")
