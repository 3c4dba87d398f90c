// The commands that can work through a running server (client, backup,
// check) reach it the same way: --server and a token from --token-file or
// COLLIDER_TOKEN.
package main

import (
	"flag"
	"fmt"
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
