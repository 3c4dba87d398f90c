// Configuration: a YAML file, COLLIDER_* environment variables and flags.
// Precedence, highest first: flags, environment, the file, built-in defaults.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"collider/casebook"
	"collider/jobs"
	"collider/store"
)

// Config is every setting of the service.
type Config struct {
	Data          string        `yaml:"data"`           // COLLIDER_DATA, --data
	Inbox         string        `yaml:"inbox"`          // COLLIDER_INBOX, --inbox
	Models        string        `yaml:"models"`         // COLLIDER_MODELS, --models
	Schedule      string        `yaml:"schedule"`       // COLLIDER_SCHEDULE, --schedule (cron, Asia/Shanghai; "off" to disable)
	Addr          string        `yaml:"addr"`           // COLLIDER_ADDR, --addr
	MemoryLimit   string        `yaml:"memory_limit"`   // COLLIDER_MEMORY_LIMIT, --memory-limit
	Threads       int           `yaml:"threads"`        // COLLIDER_THREADS, --threads
	TempDir       string        `yaml:"temp_dir"`       // COLLIDER_TEMP_DIR, --temp-dir (where DuckDB spills)
	DueDaysHigh   int           `yaml:"due_days_high"`  // COLLIDER_DUE_DAYS_HIGH, --due-days-high
	DueDaysOther  int           `yaml:"due_days_other"` // COLLIDER_DUE_DAYS_OTHER, --due-days-other
	TokenFile     string        `yaml:"token_file"`     // COLLIDER_TOKEN_FILE, --token-file (the client's token)
	Server        string        `yaml:"server"`         // COLLIDER_SERVER, --server (the client's server URL)
	ShutdownGrace time.Duration `yaml:"shutdown_grace"` // COLLIDER_SHUTDOWN_GRACE, --shutdown-grace
	MaxTempSize   string        `yaml:"max_temp_size"`  // COLLIDER_MAX_TEMP_SIZE, --max-temp-size (DuckDB max_temp_directory_size)
	ReadCacheMB   int           `yaml:"read_cache_mb"`  // COLLIDER_READ_CACHE_MB, --read-cache-mb (clues read by the API and pages)
	WorkerNice    int           `yaml:"worker_nice"`    // COLLIDER_WORKER_NICE, --worker-nice (DuckDB's worker threads; 0: the process's)

	BackupSchedule string `yaml:"backup_schedule"` // COLLIDER_BACKUP_SCHEDULE, --backup-schedule (cron, Asia/Shanghai; "off")
	BackupDir      string `yaml:"backup_dir"`      // COLLIDER_BACKUP_DIR, --backup-dir (default DATA/backups)
	BackupKeep     int    `yaml:"backup_keep"`     // COLLIDER_BACKUP_KEEP, --backup-keep: scheduled backups kept

	// The drafts' sandbox.
	PseudonymKey     string        `yaml:"pseudonym_key"`      // COLLIDER_PSEUDONYM_KEY, --pseudonym-key (default DATA/pseudonym.key)
	DraftTimeout     time.Duration `yaml:"draft_timeout"`      // COLLIDER_DRAFT_TIMEOUT, --draft-timeout
	DraftMemoryLimit string        `yaml:"draft_memory_limit"` // COLLIDER_DRAFT_MEMORY_LIMIT, --draft-memory-limit
	DraftThreads     int           `yaml:"draft_threads"`      // COLLIDER_DRAFT_THREADS, --draft-threads
}

func defaultConfig() Config {
	lim := jobs.SandboxLimits{}.WithDefaults()
	return Config{Schedule: jobs.DefaultSchedule, Addr: ":8080", DueDaysHigh: 30, DueDaysOther: 60,
		ShutdownGrace: 30 * time.Second, WorkerNice: 10, ReadCacheMB: defaultReadCacheMB(), Server: "http://127.0.0.1:8080", BackupSchedule: "off", BackupKeep: 7,
		DraftTimeout: lim.Timeout, DraftMemoryLimit: lim.MemoryLimit, DraftThreads: lim.Threads}
}

// defaultReadCacheMB is a 32nd of the memory the process may use, 256 MB
// to 2 GB: on 24 GiB, 768 MB holds every clue of a million-clue casebook.
func defaultReadCacheMB() int {
	mb := int(store.PhysicalMemory() >> 20 / 32)
	return min(max(mb, casebook.DefaultReadCacheBytes>>20), 2048)
}

// loadConfig merges the defaults, the file named by --config or
// COLLIDER_CONFIG, and the environment; flags are registered with the
// result as their defaults, so that a flag given wins.
func loadConfig(args []string) (Config, error) {
	cfg := defaultConfig()
	path := os.Getenv("COLLIDER_CONFIG")
	for i, a := range args {
		switch {
		case a == "--config" || a == "-config":
			if i+1 < len(args) {
				path = args[i+1]
			}
		case strings.HasPrefix(a, "--config="), strings.HasPrefix(a, "-config="):
			path = a[strings.Index(a, "=")+1:]
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	str := func(name string, p *string) {
		if v, ok := os.LookupEnv(name); ok && v != "" {
			*p = v
		}
	}
	num := func(name string, p *int) error {
		if v, ok := os.LookupEnv(name); ok && v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s=%q: not a number", name, v)
			}
			*p = n
		}
		return nil
	}
	str("COLLIDER_DATA", &cfg.Data)
	str("COLLIDER_INBOX", &cfg.Inbox)
	str("COLLIDER_MODELS", &cfg.Models)
	str("COLLIDER_SCHEDULE", &cfg.Schedule)
	str("COLLIDER_ADDR", &cfg.Addr)
	str("COLLIDER_MEMORY_LIMIT", &cfg.MemoryLimit)
	str("COLLIDER_TEMP_DIR", &cfg.TempDir)
	str("COLLIDER_TOKEN_FILE", &cfg.TokenFile)
	str("COLLIDER_SERVER", &cfg.Server)
	str("COLLIDER_MAX_TEMP_SIZE", &cfg.MaxTempSize)
	str("COLLIDER_BACKUP_SCHEDULE", &cfg.BackupSchedule)
	str("COLLIDER_BACKUP_DIR", &cfg.BackupDir)
	str("COLLIDER_PSEUDONYM_KEY", &cfg.PseudonymKey)
	str("COLLIDER_DRAFT_MEMORY_LIMIT", &cfg.DraftMemoryLimit)
	for name, p := range map[string]*int{"COLLIDER_THREADS": &cfg.Threads, "COLLIDER_DUE_DAYS_HIGH": &cfg.DueDaysHigh,
		"COLLIDER_DUE_DAYS_OTHER": &cfg.DueDaysOther, "COLLIDER_BACKUP_KEEP": &cfg.BackupKeep, "COLLIDER_DRAFT_THREADS": &cfg.DraftThreads,
		"COLLIDER_READ_CACHE_MB": &cfg.ReadCacheMB, "COLLIDER_WORKER_NICE": &cfg.WorkerNice} {
		if err := num(name, p); err != nil {
			return cfg, err
		}
	}
	for name, p := range map[string]*time.Duration{"COLLIDER_SHUTDOWN_GRACE": &cfg.ShutdownGrace, "COLLIDER_DRAFT_TIMEOUT": &cfg.DraftTimeout} {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return cfg, fmt.Errorf("%s=%q: %w", name, v, err)
			}
			*p = d
		}
	}
	return cfg, nil
}

// storeFlags registers the settings every command that opens the store takes.
func (c *Config) storeFlags(fs *flag.FlagSet) {
	fs.String("config", "", "YAML configuration file (env COLLIDER_CONFIG); flags > environment > file > defaults")
	fs.StringVar(&c.Data, "data", c.Data, "data directory: everything the service keeps (env COLLIDER_DATA)")
	fs.StringVar(&c.MemoryLimit, "memory-limit", c.MemoryLimit, "DuckDB memory limit, e.g. 8GB (default 60% of RAM; env COLLIDER_MEMORY_LIMIT)")
	fs.IntVar(&c.Threads, "threads", c.Threads, "DuckDB threads (default: CPUs; env COLLIDER_THREADS)")
	fs.StringVar(&c.TempDir, "temp-dir", c.TempDir, "where DuckDB spills when a query outgrows the memory limit (default DATA/tmp; env COLLIDER_TEMP_DIR)")
	fs.IntVar(&c.WorkerNice, "worker-nice", c.WorkerNice, "nice value of DuckDB's worker threads: runs give way to the API's readers, and use every core when nobody reads (0-19; env COLLIDER_WORKER_NICE)")
	fs.StringVar(&c.MaxTempSize, "max-temp-size", c.MaxTempSize, "the most DuckDB spills to the temp directory, e.g. 50GB (default: 90% of its free disk; env COLLIDER_MAX_TEMP_SIZE)")
}

// backupFlags registers the backup schedule's settings.
func (c *Config) backupFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.BackupSchedule, "backup-schedule", c.BackupSchedule, "cron schedule of backups in Asia/Shanghai, or off (env COLLIDER_BACKUP_SCHEDULE)")
	fs.StringVar(&c.BackupDir, "backup-dir", c.BackupDir, "where scheduled backups go (default DATA/backups; env COLLIDER_BACKUP_DIR)")
	fs.IntVar(&c.BackupKeep, "backup-keep", c.BackupKeep, "how many scheduled backups are kept, newest first (env COLLIDER_BACKUP_KEEP)")
}

// backupDir is where scheduled backups go.
func (c *Config) backupDir() string {
	if c.BackupDir != "" {
		return c.BackupDir
	}
	return filepath.Join(c.Data, "backups")
}

// draftFlags registers the settings of the drafts' sandbox.
func (c *Config) draftFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.PseudonymKey, "pseudonym-key", c.PseudonymKey, "the key that makes the people of the drafts' sandbox tokens, created 0600 on first start (default DATA/pseudonym.key; env COLLIDER_PSEUDONYM_KEY)")
	fs.DurationVar(&c.DraftTimeout, "draft-timeout", c.DraftTimeout, "how long a draft model may run in the sandbox (env COLLIDER_DRAFT_TIMEOUT)")
	fs.StringVar(&c.DraftMemoryLimit, "draft-memory-limit", c.DraftMemoryLimit, "a draft's DuckDB memory limit (env COLLIDER_DRAFT_MEMORY_LIMIT)")
	fs.IntVar(&c.DraftThreads, "draft-threads", c.DraftThreads, "a draft's DuckDB threads (env COLLIDER_DRAFT_THREADS)")
}

// serviceFlags registers the settings of the service (serve, run).
func (c *Config) serviceFlags(fs *flag.FlagSet) {
	c.storeFlags(fs)
	fs.StringVar(&c.Inbox, "inbox", c.Inbox, "inbox the runs load from (env COLLIDER_INBOX)")
	fs.StringVar(&c.Models, "models", c.Models, "read the models from this directory (env COLLIDER_MODELS)")
	fs.IntVar(&c.DueDaysHigh, "due-days-high", c.DueDaysHigh, "days a city has for a high-severity lead (env COLLIDER_DUE_DAYS_HIGH)")
	fs.IntVar(&c.DueDaysOther, "due-days-other", c.DueDaysOther, "days a city has for other leads (env COLLIDER_DUE_DAYS_OTHER)")
	c.draftFlags(fs)
}

func (c *Config) validate() error {
	if strings.TrimSpace(c.Data) == "" {
		return fmt.Errorf("--data is required (or COLLIDER_DATA, or data: in the config file)")
	}
	if c.DueDaysHigh <= 0 || c.DueDaysOther <= 0 {
		return fmt.Errorf("due days must be positive")
	}
	if c.BackupKeep < 1 {
		return fmt.Errorf("backup_keep must be 1 or more, not %d", c.BackupKeep)
	}
	if c.WorkerNice < 0 || c.WorkerNice > 19 {
		return fmt.Errorf("worker_nice is 0 to 19, not %d", c.WorkerNice)
	}
	if c.DraftTimeout <= 0 || c.DraftThreads <= 0 {
		return fmt.Errorf("draft_timeout and draft_threads must be positive")
	}
	return nil
}

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("collider", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}
