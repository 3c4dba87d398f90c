// The commands that can work through a running server (client, backup,
// check) reach it the same way: --server and a token from --token-file or
// COLLIDER_TOKEN.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// remoteFlags registers --server and --token-file.
func (c *Config) remoteFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Server, "server", c.Server, "the collider server (env COLLIDER_SERVER)")
	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "file holding the bearer token (env COLLIDER_TOKEN_FILE)")
}

// readToken reads the bearer token: the token file when one is set, else
// COLLIDER_TOKEN; "" when neither gives one.
func readToken(cfg Config) (string, error) {
	if cfg.TokenFile == "" {
		return strings.TrimSpace(os.Getenv("COLLIDER_TOKEN")), nil
	}
	b, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		return "", err
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("the token file %s is empty", cfg.TokenFile)
	}
	return token, nil
}

// newAPIClient is a client of cfg.Server with the configured token; long
// downloads (exports, backups) take as long as they take.
func newAPIClient(cfg Config, timeout time.Duration) (*apiClient, error) {
	token, err := readToken(cfg)
	if err != nil {
		return nil, err
	}
	if token == "" {
		return nil, fmt.Errorf("no token: give --token-file F (or COLLIDER_TOKEN)")
	}
	return &apiClient{base: strings.TrimRight(cfg.Server, "/"), token: token, http: &http.Client{Timeout: timeout}}, nil
}

// stream sends a request and returns the body of a 2xx answer for the
// caller to read and close; any other answer is an error with the
// server's message.
func (c *apiClient) stream(ctx context.Context, method, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	var e struct {
		Error struct{ Code, Message string }
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return nil, fmt.Errorf("%s: %s (%s)", resp.Status, e.Error.Message, e.Error.Code)
	}
	return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
}
