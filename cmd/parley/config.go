package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/logthrottle"
	parleypebble "github.com/parley-chat/parley/infra/pebble"
	"github.com/parley-chat/parley/infra/postgres"
	"github.com/parley-chat/parley/projections/notify"
	"github.com/parley-chat/parley/projections/retention"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/console"
	"github.com/parley-chat/parley/transport/httpapi"
	"github.com/parley-chat/parley/transport/wire"
	"github.com/parley-chat/parley/transport/ws"
)

// Lower bounds of secrets that the packages using them enforce too; the
// flags check them first so that every problem is reported at once, named
// by its flag.
const (
	minClusterSecretBytes = 16 // node.Config.Validate
	minNotifySecretBytes  = 16 // notify.WebhookConfig.Validate
	minTrustedSecretBytes = 16 // ws.Config.Validate
)

// parseServe reads serve's flags and environment into a node
// configuration, checking every value: a zero duration or count is an
// error here, never a silent default downstream.
func parseServe(args []string, stdout io.Writer) (node.Config, error) {
	f := newFlags("serve", stdout)
	dataDir := f.string("data-dir", "parley-data", "directory for the embedded log and the token secret")
	listen := f.string("listen", "127.0.0.1:8080", "gateway HTTP address; WebSocket at /ws; port 0 picks a free one")
	brokers := f.string("kafka-brokers", "", "comma-separated Kafka brokers; empty runs the embedded broker")
	clientID := f.string("kafka-client-id", "parley", "client id this process gives the brokers")
	replication := f.int("kafka-replication-factor", 1, "replication factor of topics Parley creates, 1..32767")
	kafkaSec := defineKafkaSecurity(f)
	brokerListen := f.string("broker-listen", "127.0.0.1:9092", "loopback address of the embedded broker, for taps")
	topic := f.string("topic", events.DefaultConversationTopic, "conversation topic")
	partitions := f.int("partitions", events.DefaultPartitions, "partitions of the conversation topic, 1..10000, fixed once created")
	epoch := f.int("log-epoch", 1, fmt.Sprintf("log epoch in msgid high bits (1..%d); raise it when moving the log to a new cluster", events.MaxEpoch))
	fsync := f.bool("log-fsync", false, "embedded broker: fsync every batch before acknowledging")
	logRetention := f.duration("log-retention", 0, "how long the conversation topic keeps a record; 0 keeps records forever")
	history := f.duration("retention", 0, "how long message history is kept: older messages are removed from the store and the cache; 0 keeps it forever")
	historyEvery := f.duration("retention-interval", retention.DefaultInterval, "time between runs of the history retention job, at least 1s")
	historyBatch := f.int("retention-batch", retention.DefaultBatch, fmt.Sprintf("messages one step of the history retention job reads and removes in one short write, 1..%d", retention.MaxBatch))
	editWindow := f.duration("edit-window", domain.DefaultEditWindow, "how long after sending a message its sender may edit it, at least 1s")
	cacheBytes := f.int("cache-bytes", 32<<20, "single node: bytes of messages the in-memory 7-day cache holds, at least 1 MiB")
	storeCache := f.int("store-cache-bytes", parleypebble.DefaultCacheBytes, "single node: bytes of the embedded store's block cache (outside Go's heap), at least 8 MiB")
	minFree := f.int("min-free-disk", 256<<20, "single node: bytes kept free under the embedded log and store; below it, sends and other writes are refused (unavailable); 0 for no floor")
	memLimit := f.int("memory-limit", 256<<20, "Go's soft memory limit in bytes (GOMEMLIMIT), 0 for none; the GOMEMLIMIT environment variable, if set, wins")
	secret := f.secret("token-secret", fmt.Sprintf("HS256 token secret (at least %d bytes); empty uses <data-dir>/token.secret", auth.MinSecretBytes))
	issuer := f.string("token-issuer", "", "required iss of client tokens; empty accepts any")
	audience := f.string("token-audience", "", "required aud of client tokens; empty refuses tokens that name one")
	maxLifetime := f.duration("token-max-lifetime", auth.DefaultMaxLifetime, "longest validity of a client token (exp - iat), at least 1m")
	lease := f.duration("lease", 10*time.Minute, "connection lease (timelife) granted at hello and renew, at least 1s")
	heartbeat := f.duration("heartbeat", 60*time.Second, "longest silence before a connection is closed, at least 1s")
	sendTimeout := f.duration("send-timeout", 5*time.Second, "longest a send waits for the event log before it is answered unavailable, 100ms..1m")
	ratePerSec := f.int("rate-limit", 100, "requests per second allowed per connection, at least 1")
	rateBurst := f.int("rate-burst", 200, "burst of requests allowed per connection, at least 1")
	sendRate := f.int("account-send-rate", api.DefaultSendRate, fmt.Sprintf("bytes a second one account may send through this process, a message costing %d plus its body as pushed (JSON-escaped), a group change %d plus %d an account; 0 for no limit", api.SendCost, api.SendCost, api.MemberCost))
	sendBurst := f.int("account-send-burst", api.DefaultSendBurst, fmt.Sprintf("bytes one account may send at once, at least %d (the costliest message)", api.MaxMessageCost))
	readRate := f.int("account-read-rate", api.DefaultReadRate, "reads (syncs, conversation and group lists, group reads, readers) a second one account may make through this process; 0 for no limit")
	readBurst := f.int("account-read-burst", api.DefaultReadBurst, "reads one account may make at once, at least 1")
	maxConns := f.int("max-connections", 100_000, "open WebSocket connections this gateway accepts, at least 1; more are refused with HTTP 503")
	maxConnsIP := f.int("max-connections-per-ip", 1000, "open WebSocket connections from one source address, 0 for no limit; more are refused with HTTP 429")
	newConnsIP := f.int("new-connections-per-ip", 100, "new WebSocket connections a second from one source address, in bursts of --max-connections-per-ip, 0 for no limit; more are refused with HTTP 429")
	serviceCred := f.secret("service-credential", fmt.Sprintf("shared secret for services calling the HTTP API (Bearer svc:<secret>, %d+ bytes); empty disables", httpapi.MinServiceCredentialBytes))
	readBuffer := f.int("read-buffer", 1024, fmt.Sprintf("read buffer per connection, in bytes, 256..%d (smaller saves memory on idle connections)", wire.MaxFrameBytes))
	consoleMode := f.string("console", "auto", "web console at /console/: on, off, or auto (on for a single node, off in scale-out)")
	devTokens := f.string("dev-tokens", "auto", "let the console mint tokens for any account (development only): on, off, or auto (on for a single node on a loopback --listen)")
	devTokensUnsafe := f.bool("dev-tokens-unsafe", false, "allow --dev-tokens on with a --listen that is not loopback (anyone who reaches it can sign in as anyone)")
	gcPercent := f.int("gc-percent", 400, "Go GC target percentage (GOGC), at least 10; higher trades memory for latency. The GOGC environment variable, if set, wins")
	pprofOn := f.bool("pprof", false, "serve net/http/pprof under /debug/pprof/ on the listen address")
	level := f.string("log-level", "info", "debug, info, warn or error")
	roles := f.string("roles", "gateway,projector", "what this process runs: gateway, projector or both (split roles need scale-out)")
	pgDSN := f.secret("postgres-dsn", "PostgreSQL for the message history (scale-out; may hold a password); empty keeps it in memory")
	pgSchema := f.string("postgres-schema", postgres.DefaultSchema, "PostgreSQL schema of Parley's tables")
	rds := defineRedis(f, "Redis host:port for the 7-day cache and routes (scale-out); empty keeps them in memory")
	instance := f.string("instance", "", "host:port at which other instances reach this gateway; default the listen address")
	clusterSecret := f.secret("cluster-secret", fmt.Sprintf("shared secret of the links between instances (scale-out, at least %d bytes)", minClusterSecretBytes))
	loginPolicy := f.string("login-policy", "reject", "second live login of one device: reject (refuse the new) or replace (close the old)")
	trustedSecret := f.secret("trusted-gateway-secret", fmt.Sprintf("accept identity headers from an API gateway that sends this secret (%d+ bytes); empty disables", minTrustedSecretBytes))
	trustedAccount := f.string("trusted-account-header", "X-Parley-Account", "header with the account, in trusted gateway mode")
	trustedDevice := f.string("trusted-device-header", "X-Parley-Device", "header with the device, in trusted gateway mode")
	notifyURL := f.secret("notify-url", "webhook that receives offline notifications (docs/notifications.md; may hold credentials); empty turns them off")
	notifySecret := f.secret("notify-secret", fmt.Sprintf("shared secret that signs the notification webhook's requests (%d+ bytes); required with --notify-url", minNotifySecretBytes))
	directory := f.secret("directory-url", "user service reloading missed online sets: GET <url>/accounts/<account>/devices (may hold credentials)")
	if err := f.parse(args); err != nil {
		return node.Config{}, err
	}

	f.check("data-dir", *dataDir != "", "cannot be empty")
	f.checkErr("listen", hostPort(*listen, 0))
	var brokerAddrs []string
	if *brokers != "" {
		var err error
		brokerAddrs, err = brokerList(*brokers)
		f.checkErr("kafka-brokers", err)
	}
	f.check("kafka-client-id", *clientID != "" && onlyChars(*clientID, "._-"), "want letters, digits, '.', '_' or '-'")
	f.check("kafka-replication-factor", *replication >= 1 && *replication <= 32767, "want 1..32767")
	kafkaSec.check(f)
	if *brokers == "" {
		f.check("kafka-tls", !*kafkaSec.tls, "needs %s: the embedded broker speaks neither TLS nor SASL", f.name("kafka-brokers"))
		f.check("kafka-sasl-mechanism", *kafkaSec.mechanism == "", "needs %s: the embedded broker speaks neither TLS nor SASL", f.name("kafka-brokers"))
	}
	f.checkErr("broker-listen", checkLoopback(*brokerListen))
	f.check("topic", validTopic(*topic), "want 1..249 letters, digits, '.', '_' or '-'")
	f.check("partitions", *partitions >= 1 && *partitions <= 10000, "want 1..10000")
	f.check("log-epoch", *epoch >= 1 && *epoch <= events.MaxEpoch, "want 1..%d", events.MaxEpoch)
	f.check("log-retention", *logRetention == 0 || *logRetention >= time.Minute, "want 0 (forever) or at least 1m")
	f.check("retention", *history == 0 || *history >= time.Minute, "want 0 (forever) or at least 1m")
	f.check("retention-interval", *historyEvery >= time.Second, "want at least 1s")
	f.check("retention-batch", *historyBatch >= 1 && *historyBatch <= retention.MaxBatch, "want 1..%d", retention.MaxBatch)
	f.check("edit-window", *editWindow >= time.Second, "want at least 1s")
	f.check("cache-bytes", *cacheBytes >= 1<<20, "want at least 1048576 (1 MiB)")
	f.check("store-cache-bytes", *storeCache >= parleypebble.MinCacheBytes, "want at least %d (8 MiB)", parleypebble.MinCacheBytes)
	f.check("min-free-disk", *minFree >= 0, "want 0 (no floor) or more")
	f.check("memory-limit", *memLimit == 0 || *memLimit >= 64<<20, "want 0 (none) or at least 67108864 (64 MiB)")
	f.check("token-secret", *secret == "" || len(*secret) >= auth.MinSecretBytes, "need at least %d bytes", auth.MinSecretBytes)
	f.check("lease", *lease >= time.Second, "want at least 1s")
	f.check("token-max-lifetime", *maxLifetime >= time.Minute, "want at least 1m")
	f.check("heartbeat", *heartbeat >= time.Second, "want at least 1s")
	f.check("send-timeout", *sendTimeout >= 100*time.Millisecond && *sendTimeout <= time.Minute, "want 100ms..1m")
	f.check("rate-limit", *ratePerSec >= 1, "want at least 1")
	f.check("rate-burst", *rateBurst >= 1, "want at least 1")
	f.check("account-send-rate", *sendRate >= 0, "want 0 (no limit) or more")
	f.check("account-send-burst", *sendBurst >= api.MaxMessageCost, "want at least %d (the costliest message)", api.MaxMessageCost)
	f.check("account-read-rate", *readRate >= 0, "want 0 (no limit) or more")
	f.check("account-read-burst", *readBurst >= 1, "want at least 1")
	f.check("max-connections", *maxConns >= 1, "want at least 1")
	f.check("max-connections-per-ip", *maxConnsIP >= 0, "want 0 (no limit) or more")
	f.check("new-connections-per-ip", *newConnsIP >= 0, "want 0 (no limit) or more")
	f.check("service-credential", *serviceCred == "" || len(*serviceCred) >= httpapi.MinServiceCredentialBytes, "need at least %d bytes", httpapi.MinServiceCredentialBytes)
	f.check("service-credential", !strings.ContainsAny(*serviceCred, " \t\r\n"), "cannot contain white space")
	f.check("read-buffer", *readBuffer >= 256 && *readBuffer <= wire.MaxFrameBytes, "want 256..%d", wire.MaxFrameBytes)
	f.check("console", slices.Contains([]string{"on", "off", "auto"}, *consoleMode), "want on, off or auto")
	f.check("dev-tokens", slices.Contains([]string{"on", "off", "auto"}, *devTokens), "want on, off or auto")
	f.check("gc-percent", *gcPercent >= 10, "want at least 10")
	var lvl slog.Level
	f.check("log-level", slices.Contains([]string{"debug", "info", "warn", "error"}, strings.ToLower(*level)) && lvl.UnmarshalText([]byte(*level)) == nil, "want debug, info, warn or error")
	var rl node.Roles
	rolesOK := true
	for _, r := range strings.Split(*roles, ",") {
		switch strings.TrimSpace(r) {
		case "gateway":
			rl.Gateway = true
		case "projector":
			rl.Projector = true
		default:
			rolesOK = false
		}
	}
	f.check("roles", rolesOK, "want gateway, projector or gateway,projector")
	if *pgDSN != "" {
		// pgx's own message quotes the DSN with the password masked on a
		// best-effort basis only: say nothing of the value.
		_, err := pgxpool.ParseConfig(*pgDSN)
		f.check("postgres-dsn", err == nil, "cannot parse: want postgres://user:password@host:5432/db?... or key=value pairs")
	}
	f.check("postgres-schema", postgres.ValidSchema(*pgSchema), "want lowercase letters, digits and '_', at most 63 bytes, not starting with a digit")
	rds.check(f)
	if *instance != "" {
		f.checkErr("instance", hostPort(*instance, 1))
	}
	f.check("cluster-secret", *clusterSecret == "" || len(*clusterSecret) >= minClusterSecretBytes, "need at least %d bytes", minClusterSecretBytes)
	f.check("login-policy", slices.Contains([]string{"reject", "replace"}, *loginPolicy), "want reject or replace")
	f.check("trusted-gateway-secret", *trustedSecret == "" || len(*trustedSecret) >= minTrustedSecretBytes, "need at least %d bytes", minTrustedSecretBytes)
	f.check("trusted-account-header", validHeaderName(*trustedAccount), "want a header name")
	f.check("trusted-device-header", validHeaderName(*trustedDevice), "want a header name")
	f.check("trusted-device-header", !strings.EqualFold(*trustedAccount, *trustedDevice), "cannot be the same header as %s", f.name("trusted-account-header"))
	if *directory != "" {
		f.checkErr("directory-url", checkURL(*directory))
	}

	if *notifyURL != "" {
		f.checkErr("notify-url", checkURL(*notifyURL))
		f.check("notify-secret", len(*notifySecret) >= minNotifySecretBytes, "need at least %d bytes with %s", minNotifySecretBytes, f.name("notify-url"))
	} else {
		f.check("notify-secret", *notifySecret == "", "needs %s", f.name("notify-url"))
	}

	scaleOut := *pgDSN != "" || *rds.addr != ""
	if (*pgDSN == "") != (*rds.addr == "") {
		f.fail(fmt.Errorf("%s and %s go together: scale-out needs both", f.name("postgres-dsn"), f.name("redis-addr")))
	}
	consoleOn := *consoleMode == "on" || *consoleMode == "auto" && !scaleOut
	if consoleOn && *devTokens == "on" && !*devTokensUnsafe && !console.IsLoopback(*listen) {
		// node.Config.Validate says so too, but only after every flag
		// checked here: reported with them, it is one problem among all.
		f.check("dev-tokens", false, "lets anyone who reaches %s sign in as any account: listen on a loopback address, turn them off (off), or acknowledge it (%s)", *listen, f.name("dev-tokens-unsafe"))
	}
	if scaleOut && *clusterSecret == "" {
		f.fail(fmt.Errorf("scale-out needs %s, the same on every process", f.name("cluster-secret")))
	}
	if rolesOK && rl != (node.Roles{Gateway: true, Projector: true}) {
		if !scaleOut {
			f.fail(fmt.Errorf("%s: roles can be split only in scale-out (with --postgres-dsn and --redis-addr)", f.name("roles")))
		}
		if *brokers == "" {
			f.fail(fmt.Errorf("%s: split roles need a shared broker (--kafka-brokers, e.g. a parley broker)", f.name("roles")))
		}
	}
	if err := f.err(); err != nil {
		return node.Config{}, err
	}

	cfg := node.Config{
		DataDir: *dataDir,
		Listen:  *listen,
		Logger:  slog.New(logthrottle.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}), 0, 0)),
	}
	cfg.Kafka.Brokers = brokerAddrs
	cfg.Kafka.Topic = *topic
	cfg.Kafka.ClientID = *clientID
	cfg.Kafka.ReplicationFactor = int16(*replication)
	cfg.Kafka.Security = kafkaSec.security()
	cfg.Kafka.Partitions = int32(*partitions)
	cfg.Kafka.Epoch = uint8(*epoch)
	cfg.EmbeddedBroker.Addr = *brokerListen
	cfg.EmbeddedBroker.SyncWrites = *fsync
	cfg.Kafka.Retention = *logRetention
	cfg.Retention = retention.Config{Keep: *history, Interval: *historyEvery, Batch: *historyBatch}
	cfg.CacheBytes = int64(*cacheBytes)
	cfg.StoreCacheBytes = int64(*storeCache)
	cfg.API.EditWindow = *editWindow
	cfg.MemoryLimit = int64(*memLimit)
	cfg.MinFreeDisk = int64(*minFree)
	cfg.TokenSecret = []byte(*secret)
	cfg.TokenIssuer, cfg.TokenAudience, cfg.TokenMaxLifetime = *issuer, *audience, *maxLifetime
	cfg.Roles = rl
	if scaleOut {
		cfg.Postgres = &postgres.Config{DSN: *pgDSN, Schema: *pgSchema}
		rc := rds.config()
		cfg.Redis = &rc
	}
	cfg.Instance = *instance
	cfg.ClusterSecret = []byte(*clusterSecret)
	cfg.Gateway.ReplaceLogin = *loginPolicy == "replace"
	cfg.DirectoryURL = *directory
	cfg.Notify = notify.WebhookConfig{URL: *notifyURL, Secret: []byte(*notifySecret)}
	cfg.Gateway.Trusted = ws.TrustedHeaders{Secret: *trustedSecret, AccountHeader: *trustedAccount, DeviceHeader: *trustedDevice}
	cfg.Pprof = *pprofOn
	cfg.GCPercent = *gcPercent
	cfg.Console = consoleOn
	cfg.DevTokens = *devTokens == "on" || *devTokens == "auto" && !scaleOut && console.IsLoopback(*listen)
	cfg.DevTokensUnsafe = *devTokensUnsafe
	cfg.Gateway.ReadBufferBytes = *readBuffer
	cfg.Gateway.MaxConnections = *maxConns
	cfg.Gateway.MaxConnectionsPerIP = *maxConnsIP
	if *maxConnsIP == 0 {
		cfg.Gateway.MaxConnectionsPerIP = ws.NoLimit // the gateway's zero is its default
	}
	cfg.Gateway.NewConnectionsPerIP = float64(*newConnsIP)
	if *newConnsIP == 0 {
		cfg.Gateway.NewConnectionsPerIP = ws.NoLimit
	}
	cfg.ServiceCredential = *serviceCred
	cfg.Gateway.RatePerSecond = float64(*ratePerSec)
	cfg.Gateway.RateBurst = *rateBurst
	cfg.Gateway.Lease = *lease
	cfg.Gateway.Heartbeat = *heartbeat
	cfg.API.SendTimeout = *sendTimeout
	cfg.API.SendRate, cfg.API.SendBurst = float64(*sendRate), *sendBurst
	if *sendRate == 0 {
		cfg.API.SendRate = -1 // the service's zero is its default
	}
	cfg.API.ReadRate, cfg.API.ReadBurst = float64(*readRate), *readBurst
	if *readRate == 0 {
		cfg.API.ReadRate = -1
	}
	return cfg, nil
}
