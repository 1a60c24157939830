// Package redis connects Parley to Redis, which holds the 7-day message
// cache and its progress (R5, R6) when Parley scales out. Every key Parley
// writes starts with one configurable prefix, so several deployments (or
// tests) can share a server.
package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/parley-chat/parley/infra/tlsconfig"
	goredis "github.com/redis/go-redis/v9"
)

// Defaults of Config.
const (
	DefaultAddr   = "127.0.0.1:6379"
	DefaultPrefix = "parley:"
)

// Config configures Parley's connection to Redis.
type Config struct {
	// Addr is the server's host:port. Default DefaultAddr, 127.0.0.1:6379.
	// Unused with Sentinels.
	Addr string
	// Sentinels, when set, are the host:port of Redis Sentinels that
	// monitor SentinelMaster: the client asks them which server is the
	// master, connects to it, and follows a failover to the replica the
	// Sentinels promote. Addr is then unused.
	Sentinels []string
	// SentinelMaster is the name the Sentinels monitor the master under.
	// Required with Sentinels.
	SentinelMaster string
	// SentinelPassword authenticates to the Sentinels (their
	// requirepass); empty sends none. Password is the master's.
	SentinelPassword string
	// User is the ACL user to authenticate as; empty is Redis's default
	// user. It needs a Password.
	User string
	// Password authenticates (HELLO or AUTH); empty sends none.
	Password string
	// TLS connects over TLS (1.2 or newer), checking the server's
	// certificate against the system's CAs or those of TLSCAFile.
	TLS bool
	// TLSCAFile is a PEM file of the CAs to trust; it needs TLS.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are PEM files of a client certificate and
	// its key, for a server that asks for one (tls-auth-clients); both or
	// neither, and they need TLS.
	TLSCertFile, TLSKeyFile string
	// DB is the logical database to SELECT. Default 0.
	DB int
	// Prefix starts every key Parley writes, so deployments and tests can
	// share a server. Default DefaultPrefix, "parley:". Pass the same prefix
	// to every component that reads or writes Parley's keys.
	Prefix string
	// PoolSize is the most connections kept open to the server; 0 leaves
	// go-redis's default of 10 per CPU.
	PoolSize int
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	addrs := []string{c.Addr}
	if len(c.Sentinels) > 0 {
		addrs = c.Sentinels
		if c.SentinelMaster == "" {
			errs = append(errs, errors.New("redis: sentinels need the name of the master they monitor"))
		}
	} else if c.SentinelMaster != "" || c.SentinelPassword != "" {
		errs = append(errs, errors.New("redis: a sentinel master name or password needs sentinels"))
	}
	for _, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("redis: address %q is not host:port: %w", a, err))
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			errs = append(errs, fmt.Errorf("redis: port %q of address %q must be within 1..65535", port, a))
		}
	}
	if c.DB < 0 {
		errs = append(errs, fmt.Errorf("redis: db %d must not be negative", c.DB))
	}
	if c.User != "" && c.Password == "" {
		errs = append(errs, errors.New("redis: a user needs a password"))
	}
	if c.TLSCAFile != "" && !c.TLS {
		errs = append(errs, errors.New("redis: a TLS CA file needs TLS enabled"))
	}
	if (c.TLSCertFile != "" || c.TLSKeyFile != "") && !c.TLS {
		errs = append(errs, errors.New("redis: a TLS client certificate needs TLS enabled"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("redis: a TLS client certificate needs both its certificate and its key file"))
	}
	if c.PoolSize < 0 {
		errs = append(errs, fmt.Errorf("redis: pool size %d must not be negative", c.PoolSize))
	}
	return errors.Join(errs...)
}

// WithDefaults returns c with its defaults filled in, so that a caller can
// read the effective Prefix to hand to the cache and its progress.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

// Open connects to the server described by cfg and checks it with a PING
// bounded by ctx. The caller owns the client and closes it.
func Open(ctx context.Context, cfg Config) (*goredis.Client, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var tc *tls.Config
	if cfg.TLS {
		var err error
		if tc, err = tlsconfig.Client("Redis", tlsconfig.Files{CA: cfg.TLSCAFile, Cert: cfg.TLSCertFile, Key: cfg.TLSKeyFile}); err != nil {
			return nil, err
		}
	}
	// One set of options for both kinds of client: go-redis derives a
	// single server's or a Sentinel-watched master's from it.
	opts := &goredis.UniversalOptions{
		Addrs:     []string{cfg.Addr},
		Username:  cfg.User,
		Password:  cfg.Password,
		TLSConfig: tc,
		DB:        cfg.DB,
		PoolSize:  cfg.PoolSize,
		// Every caller's deadline bounds its command, not only go-redis's
		// own 3 s read timeout: readiness and a hello must answer in time
		// while Redis is unreachable.
		ContextTimeoutEnabled: true,
	}
	var client *goredis.Client
	if len(cfg.Sentinels) > 0 {
		opts.Addrs, opts.MasterName, opts.SentinelPassword = cfg.Sentinels, cfg.SentinelMaster, cfg.SentinelPassword
		client = goredis.NewFailoverClient(opts.Failover())
	} else {
		client = goredis.NewClient(opts.Simple())
	}
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("cannot reach redis at %s: %w", cfg.where(), err)
	}
	return client, nil
}

// where names the server for messages: its address, or the master the
// Sentinels monitor.
func (c Config) where() string {
	if len(c.Sentinels) > 0 {
		return fmt.Sprintf("master %q of the sentinels %s", c.SentinelMaster, strings.Join(c.Sentinels, ","))
	}
	return c.Addr
}

// UseLogger hands go-redis's own messages — a Sentinel's switch to a new
// master, a connection pool's trouble — to log instead of the standard
// error. go-redis keeps one logger for the whole process.
func UseLogger(log *slog.Logger) {
	goredis.SetLogger(slogPrinter{log.With("component", "redis")})
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(ctx context.Context, format string, v ...any) {
	p.log.InfoContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)))
}
