package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/kafka"
	"github.com/parley-chat/parley/infra/node"
	"github.com/parley-chat/parley/infra/postgres"
	"github.com/parley-chat/parley/infra/redis"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/console"
	"github.com/parley-chat/parley/transport/ws"
)

// envFlags is a FlagSet whose flags default to PARLEY_* environment variables.
type envFlags struct {
	*flag.FlagSet
	errs []error
}

func newFlags(name string, out io.Writer) *envFlags {
	fs := flag.NewFlagSet("parley "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	return &envFlags{FlagSet: fs}
}

func envName(flagName string) string {
	return "PARLEY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (f *envFlags) string(name, def, usage string) *string {
	if v, ok := os.LookupEnv(envName(name)); ok {
		def = v
	}
	return f.String(name, def, usage+" ("+envName(name)+")")
}

func (f *envFlags) duration(name string, def time.Duration, usage string) *time.Duration {
	if v, ok := os.LookupEnv(envName(name)); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s=%q: %w", envName(name), v, err))
		} else {
			def = d
		}
	}
	return f.Duration(name, def, usage+" ("+envName(name)+")")
}

func (f *envFlags) int(name string, def int, usage string) *int {
	if v, ok := os.LookupEnv(envName(name)); ok {
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s=%q: not a number", envName(name), v))
		} else {
			def = n
		}
	}
	return f.Int(name, def, usage+" ("+envName(name)+")")
}

func (f *envFlags) bool(name string, def bool, usage string) *bool {
	if v, ok := os.LookupEnv(envName(name)); ok {
		def = v == "1" || strings.EqualFold(v, "true")
	}
	return f.Bool(name, def, usage+" ("+envName(name)+")")
}

func (f *envFlags) parse(args []string) error {
	if err := f.Parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		f.errs = append(f.errs, fmt.Errorf("unexpected arguments %q", f.Args()))
	}
	return errors.Join(f.errs...)
}

func parseServe(args []string, stderr io.Writer) (node.Config, error) {
	f := newFlags("serve", stderr)
	dataDir := f.string("data-dir", "parley-data", "directory for the embedded log and the token secret")
	listen := f.string("listen", "127.0.0.1:8080", "gateway HTTP address; WebSocket at /ws")
	brokers := f.string("kafka-brokers", "", "comma-separated Kafka brokers; empty runs the embedded broker")
	clientID := f.string("kafka-client-id", "parley", "client id this process gives the brokers")
	replication := f.int("kafka-replication-factor", 1, "replication factor of topics Parley creates")
	kafkaTLS := f.bool("kafka-tls", false, "connect to the brokers over TLS")
	kafkaCA := f.string("kafka-tls-ca", "", "PEM file of CAs to trust for the brokers; empty uses the system pool")
	saslMech := f.string("kafka-sasl-mechanism", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty for none")
	saslUser := f.string("kafka-sasl-user", "", "SASL user")
	saslPass := f.string("kafka-sasl-password", "", "SASL password")
	brokerListen := f.string("broker-listen", "127.0.0.1:9092", "loopback address of the embedded broker, for taps")
	topic := f.string("topic", events.DefaultConversationTopic, "conversation topic")
	partitions := f.int("partitions", events.DefaultPartitions, "partitions of the conversation topic, fixed once created")
	epoch := f.int("log-epoch", 1, "log epoch in msgid high bits (1..31); raise it when moving the log to a new cluster")
	fsync := f.bool("log-fsync", false, "embedded broker: fsync every batch before acknowledging")
	secret := f.string("token-secret", "", "HS256 token secret (at least 32 bytes); empty uses <data-dir>/token.secret")
	issuer := f.string("token-issuer", "", "required iss of client tokens; empty accepts any")
	audience := f.string("token-audience", "", "required aud of client tokens; empty refuses tokens that name one")
	maxLifetime := f.duration("token-max-lifetime", auth.DefaultMaxLifetime, "longest validity of a client token (exp - iat)")
	lease := f.duration("lease", 10*time.Minute, "connection lease (timelife) granted at hello and renew")
	heartbeat := f.duration("heartbeat", 60*time.Second, "longest silence before a connection is closed")
	ratePerSec := f.int("rate-limit", 100, "requests per second allowed per connection")
	rateBurst := f.int("rate-burst", 200, "burst of requests allowed per connection")
	serviceCred := f.string("service-credential", "", "shared secret for services calling the HTTP API (Bearer svc:<secret>, 16+ bytes); empty disables")
	readBuffer := f.int("read-buffer", 1024, "read buffer per connection, in bytes (smaller saves memory on idle connections)")
	consoleMode := f.string("console", "auto", "web console at /console/: on, off, or auto (on for a single node, off in scale-out)")
	devTokens := f.string("dev-tokens", "auto", "let the console mint tokens for any account (development only): on, off, or auto (on for a single node on a loopback --listen)")
	devTokensUnsafe := f.bool("dev-tokens-unsafe", false, "allow --dev-tokens on with a --listen that is not loopback (anyone who reaches it can sign in as anyone)")
	gcPercent := f.int("gc-percent", 400, "Go GC target percentage (GOGC); higher trades memory for latency. The GOGC environment variable, if set, wins")
	pprofOn := f.bool("pprof", false, "serve net/http/pprof under /debug/pprof/ on the listen address")
	level := f.string("log-level", "info", "debug, info, warn or error")
	roles := f.string("roles", "gateway,projector", "what this process runs: gateway, projector or both (split roles need scale-out)")
	pgDSN := f.string("postgres-dsn", "", "PostgreSQL for the message history (scale-out); empty keeps it in memory")
	pgSchema := f.string("postgres-schema", "parley", "PostgreSQL schema of Parley's tables")
	redisAddr := f.string("redis-addr", "", "Redis for the 7-day cache and routes (scale-out); empty keeps them in memory")
	redisPrefix := f.string("redis-prefix", "parley:", "prefix of every Redis key")
	instance := f.string("instance", "", "ip:port at which other instances reach this gateway; default the listen address")
	clusterSecret := f.string("cluster-secret", "", "shared secret of the links between instances (scale-out, at least 16 bytes)")
	loginPolicy := f.string("login-policy", "reject", "second live login of one device: reject (refuse the new) or replace (close the old)")
	trustedSecret := f.string("trusted-gateway-secret", "", "accept identity headers from an API gateway that sends this secret (16+ bytes); empty disables")
	trustedAccount := f.string("trusted-account-header", "X-Parley-Account", "header with the account, in trusted gateway mode")
	trustedDevice := f.string("trusted-device-header", "X-Parley-Device", "header with the device, in trusted gateway mode")
	directory := f.string("directory-url", "", "user service reloading missed online sets: GET <url>/accounts/<account>/devices")
	if err := f.parse(args); err != nil {
		return node.Config{}, err
	}
	var errs []error
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", *level))
	}
	if *epoch < 1 || *epoch > events.MaxEpoch {
		errs = append(errs, fmt.Errorf("--log-epoch %d: want 1..%d", *epoch, events.MaxEpoch))
	}
	if *partitions < 1 || *partitions > 10000 {
		errs = append(errs, fmt.Errorf("--partitions %d: want 1..10000", *partitions))
	}
	if *secret != "" && len(*secret) < auth.MinSecretBytes {
		errs = append(errs, fmt.Errorf("--token-secret: need at least %d bytes", auth.MinSecretBytes))
	}
	var rl node.Roles
	for _, r := range strings.Split(*roles, ",") {
		switch strings.TrimSpace(r) {
		case "gateway":
			rl.Gateway = true
		case "projector":
			rl.Projector = true
		default:
			errs = append(errs, fmt.Errorf("--roles: unknown role %q (want gateway, projector)", r))
		}
	}
	if *loginPolicy != "reject" && *loginPolicy != "replace" {
		errs = append(errs, fmt.Errorf("--login-policy %q: want reject or replace", *loginPolicy))
	}
	if *replication < 1 || *replication > 32767 {
		errs = append(errs, fmt.Errorf("--kafka-replication-factor %d: want 1..32767", *replication))
	}
	if err := (kafka.Security{TLS: *kafkaTLS, TLSCAFile: *kafkaCA, SASLMechanism: *saslMech, SASLUser: *saslUser}).Validate(); err != nil {
		errs = append(errs, err)
	}
	for name, v := range map[string]string{"--console": *consoleMode, "--dev-tokens": *devTokens} {
		if v != "on" && v != "off" && v != "auto" {
			errs = append(errs, fmt.Errorf("%s %q: want on, off or auto", name, v))
		}
	}
	if (*pgDSN == "") != (*redisAddr == "") {
		errs = append(errs, errors.New("--postgres-dsn and --redis-addr go together: scale-out needs both"))
	}
	if err := errors.Join(errs...); err != nil {
		return node.Config{}, err
	}
	cfg := node.Config{
		DataDir: *dataDir,
		Listen:  *listen,
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})),
	}
	if *brokers != "" {
		cfg.Kafka.Brokers = strings.Split(*brokers, ",")
	}
	cfg.Kafka.Topic = *topic
	cfg.Kafka.ClientID = *clientID
	cfg.Kafka.ReplicationFactor = int16(*replication)
	cfg.Kafka.Security = kafka.Security{TLS: *kafkaTLS, TLSCAFile: *kafkaCA, SASLMechanism: *saslMech, SASLUser: *saslUser, SASLPassword: *saslPass}
	cfg.Kafka.Partitions = int32(*partitions)
	cfg.Kafka.Epoch = uint8(*epoch)
	cfg.EmbeddedBroker.Addr = *brokerListen
	cfg.EmbeddedBroker.SyncWrites = *fsync
	cfg.TokenSecret = []byte(*secret)
	cfg.TokenIssuer, cfg.TokenAudience, cfg.TokenMaxLifetime = *issuer, *audience, *maxLifetime
	cfg.Roles = rl
	if *pgDSN != "" {
		cfg.Postgres = &postgres.Config{DSN: *pgDSN, Schema: *pgSchema}
		cfg.Redis = &redis.Config{Addr: *redisAddr, Prefix: *redisPrefix}
	}
	cfg.Instance = *instance
	cfg.ClusterSecret = []byte(*clusterSecret)
	cfg.Gateway.ReplaceLogin = *loginPolicy == "replace"
	cfg.DirectoryURL = *directory
	cfg.Gateway.Trusted = ws.TrustedHeaders{Secret: *trustedSecret, AccountHeader: *trustedAccount, DeviceHeader: *trustedDevice}
	cfg.Pprof = *pprofOn
	if *gcPercent < 10 {
		return node.Config{}, fmt.Errorf("--gc-percent %d: want at least 10", *gcPercent)
	}
	cfg.GCPercent = *gcPercent
	single := *pgDSN == ""
	cfg.Console = *consoleMode == "on" || *consoleMode == "auto" && single
	cfg.DevTokens = *devTokens == "on" || *devTokens == "auto" && single && console.IsLoopback(*listen)
	cfg.DevTokensUnsafe = *devTokensUnsafe
	cfg.Gateway.ReadBufferBytes = *readBuffer
	cfg.ServiceCredential = *serviceCred
	cfg.Gateway.RatePerSecond = float64(*ratePerSec)
	cfg.Gateway.RateBurst = *rateBurst
	cfg.Gateway.Lease = *lease
	cfg.Gateway.Heartbeat = *heartbeat
	return cfg, nil
}

func token(args []string, stdout, stderr io.Writer) error {
	f := newFlags("token", stderr)
	account := f.string("account", "", "account id (required)")
	device := f.string("device", "default", "device id")
	ttl := f.duration("ttl", 24*time.Hour, "how long the token is valid")
	dataDir := f.string("data-dir", "parley-data", "data directory whose token.secret signs the token")
	secret := f.string("token-secret", "", "HS256 secret; empty uses <data-dir>/token.secret")
	issuer := f.string("token-issuer", "", "iss of the token: the server's --token-issuer")
	audience := f.string("token-audience", "", "aud of the token: the server's --token-audience")
	maxLifetime := f.duration("token-max-lifetime", auth.DefaultMaxLifetime, "refuse a --ttl longer than this")
	if err := f.parse(args); err != nil {
		return err
	}
	if _, err := domain.ParseAccountID(*account); err != nil {
		return fmt.Errorf("--account: %w", err)
	}
	key := []byte(*secret)
	if len(key) == 0 {
		var err error
		if key, err = node.LoadOrCreateSecret(*dataDir); err != nil {
			return err
		}
	}
	tokens, err := auth.New(auth.Config{Secret: key, Issuer: *issuer, Audience: *audience, MaxLifetime: *maxLifetime})
	if err != nil {
		return err
	}
	t, err := tokens.Mint(domain.AccountID(*account), domain.DeviceID(*device), *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, t)
	return nil
}
