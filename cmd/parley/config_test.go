package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/infra/logthrottle"
	"github.com/parley-chat/parley/infra/redis"
	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/groups"
	"github.com/parley-chat/parley/projections/logout"
	"github.com/parley-chat/parley/projections/push"
	"github.com/parley-chat/parley/projections/store"
	"github.com/parley-chat/parley/projections/stream"
)

// secretValue is what the tests give a secret. It is long enough for
// every minimum, so where it shows up it was printed, not refused.
const secretValue = "s3cret-MUST-NOT-BE-PRINTED-0123456789abcdef"

// runCapture runs parley with args and returns the error and everything it
// wrote.
func runCapture(args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = run(args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// Every configuration mistake is refused with a message naming the flag or
// the variable it came from, nothing is printed on stdout (no token is
// minted, no server started), and no secret shows up anywhere.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // each must be in the error
	}{
		// Environment values parse exactly like flags.
		{"integer with trailing text in env", []string{"serve"}, map[string]string{"PARLEY_PARTITIONS": "8 partitions"}, []string{`PARLEY_PARTITIONS="8 partitions"`, "decimal integer"}},
		{"integer in exponent form in env", []string{"serve"}, map[string]string{"PARLEY_RATE_LIMIT": "1e3"}, []string{`PARLEY_RATE_LIMIT="1e3"`}},
		{"hexadecimal integer", []string{"serve", "--partitions", "0x10"}, nil, []string{`--partitions="0x10"`}},
		{"integer out of range", []string{"serve", "--rate-burst", "99999999999999999999"}, nil, []string{"--rate-burst", "out of range"}},
		{"boolean yes in env", []string{"serve"}, map[string]string{"PARLEY_KAFKA_TLS": "yes"}, []string{`PARLEY_KAFKA_TLS="yes"`, "want a boolean"}},
		{"boolean on in env", []string{"serve"}, map[string]string{"PARLEY_PPROF": "on"}, []string{`PARLEY_PPROF="on"`}},
		{"empty boolean in env", []string{"broker"}, map[string]string{"PARLEY_LOG_FSYNC": ""}, []string{`PARLEY_LOG_FSYNC=""`}},
		{"boolean yes as flag", []string{"serve", "--kafka-tls=yes"}, nil, []string{`--kafka-tls="yes"`}},
		{"unparsable duration in env", []string{"serve"}, map[string]string{"PARLEY_LEASE": "soon"}, []string{`PARLEY_LEASE="soon"`, "duration"}},
		// Ranges: zero is an error, not "the default".
		{"zero lease", []string{"serve", "--lease", "0s"}, nil, []string{`--lease="0s"`, "at least 1s"}},
		{"zero lease in env", []string{"serve"}, map[string]string{"PARLEY_LEASE": "0s"}, []string{`PARLEY_LEASE="0s"`, "at least 1s"}},
		{"sub-second heartbeat", []string{"serve", "--heartbeat", "500ms"}, nil, []string{"--heartbeat"}},
		{"store cache below 8 MiB", []string{"serve", "--store-cache-bytes", "1048576"}, nil, []string{"--store-cache-bytes", "at least 8388608"}},
		{"zero rate limit", []string{"serve", "--rate-limit", "0"}, nil, []string{"--rate-limit"}},
		{"zero send timeout", []string{"serve", "--send-timeout", "0s"}, nil, []string{`--send-timeout="0s"`, "100ms..1m"}},
		{"hour-long send timeout", []string{"serve"}, map[string]string{"PARLEY_SEND_TIMEOUT": "1h"}, []string{`PARLEY_SEND_TIMEOUT="1h"`, "100ms..1m"}},
		{"zero rate burst", []string{"serve", "--rate-burst", "0"}, nil, []string{"--rate-burst"}},
		{"TLS to the embedded broker", []string{"serve", "--kafka-tls"}, nil, []string{"--kafka-tls", "needs --kafka-brokers"}},
		{"SASL to the embedded broker", []string{"serve", "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-user", "u"}, map[string]string{"PARLEY_KAFKA_SASL_PASSWORD": "p"}, []string{"--kafka-sasl-mechanism", "needs --kafka-brokers"}},
		{"tap with a SASL user and no mechanism", []string{"tap", "--kafka-sasl-user", "u"}, nil, []string{"--kafka-sasl-user", "needs --kafka-sasl-mechanism"}},
		{"logout with a CA and no TLS", []string{"logout", "--account", "a", "--kafka-tls-ca", "/etc/hostname"}, nil, []string{"--kafka-tls-ca", "needs --kafka-tls"}},
		{"replay with SASL and no password", []string{"replay", "--projection", "cache", "--redis-addr", "127.0.0.1:6379", "--postgres-dsn", "postgres://h/db", "--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-user", "u"}, nil, []string{"--kafka-sasl-password", "required with --kafka-sasl-mechanism"}},
		{"negative send rate", []string{"serve", "--account-send-rate", "-1"}, nil, []string{"--account-send-rate", "0 (no limit) or more"}},
		{"send burst below the costliest message", []string{"serve"}, map[string]string{"PARLEY_ACCOUNT_SEND_BURST": "99327"}, []string{"PARLEY_ACCOUNT_SEND_BURST", "at least 99328"}},
		{"negative read rate", []string{"serve", "--account-read-rate", "-1"}, nil, []string{"--account-read-rate", "0 (no limit) or more"}},
		{"no read burst", []string{"serve"}, map[string]string{"PARLEY_ACCOUNT_READ_BURST": "0"}, []string{"PARLEY_ACCOUNT_READ_BURST", "at least 1"}},
		{"small read buffer", []string{"serve", "--read-buffer", "100"}, nil, []string{"--read-buffer"}},
		{"huge read buffer", []string{"serve", "--read-buffer", "1000000000"}, nil, []string{"--read-buffer"}},
		{"low gc percent", []string{"serve", "--gc-percent", "5"}, nil, []string{"--gc-percent", "at least 10"}},
		{"negative gc percent", []string{"serve", "--gc-percent", "-1"}, nil, []string{"--gc-percent"}},
		{"zero partitions", []string{"serve", "--partitions", "0"}, nil, []string{"--partitions", "1..10000"}},
		{"epoch out of range", []string{"serve", "--log-epoch", "32"}, nil, []string{"--log-epoch", "1..31"}},
		{"zero replication factor", []string{"serve", "--kafka-replication-factor", "0"}, nil, []string{"--kafka-replication-factor"}},
		// Choices.
		{"bad log level", []string{"serve", "--log-level", "loud"}, nil, []string{"--log-level"}},
		{"log level with an offset", []string{"serve", "--log-level", "info+2"}, nil, []string{"--log-level"}},
		{"unknown role", []string{"serve", "--roles", "gateway,,projector"}, nil, []string{"--roles"}},
		{"split roles on a single node", []string{"serve", "--roles", "gateway"}, nil, []string{"--roles", "only in scale-out", "shared broker"}},
		{"console yes", []string{"serve", "--console", "yes"}, nil, []string{"--console", "on, off or auto"}},
		{"dev tokens true", []string{"serve"}, map[string]string{"PARLEY_DEV_TOKENS": "true"}, []string{"PARLEY_DEV_TOKENS"}},
		{"bad login policy", []string{"serve", "--login-policy", "kick"}, nil, []string{"--login-policy"}},
		{"lowercase SASL mechanism", []string{"serve", "--kafka-sasl-mechanism", "plain", "--kafka-sasl-user", "u"}, nil, []string{"--kafka-sasl-mechanism"}},
		{"SASL without password", []string{"serve", "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-user", "u"}, nil, []string{"--kafka-sasl-password", "required"}},
		{"SASL password without mechanism", []string{"serve"}, map[string]string{"PARLEY_KAFKA_SASL_PASSWORD": secretValue}, []string{"PARLEY_KAFKA_SASL_PASSWORD", "--kafka-sasl-mechanism"}},
		{"CA file without TLS", []string{"serve", "--kafka-tls-ca", os.Args[0]}, nil, []string{"--kafka-tls-ca", "needs --kafka-tls"}},
		{"missing CA file", []string{"serve", "--kafka-tls", "--kafka-tls-ca", "ca.pem"}, nil, []string{`--kafka-tls-ca="ca.pem": cannot read`}},
		{"client certificate without TLS", []string{"serve", "--kafka-brokers", "k:9092", "--kafka-tls-cert", os.Args[0], "--kafka-tls-key", os.Args[0]}, nil, []string{"--kafka-tls-cert", "--kafka-tls-key", "needs --kafka-tls"}},
		{"client certificate without its key", []string{"serve", "--kafka-brokers", "k:9092", "--kafka-tls", "--kafka-tls-cert", os.Args[0]}, nil, []string{"--kafka-tls-key", "required with --kafka-tls-cert"}},
		{"missing client key", []string{"serve", "--kafka-brokers", "k:9092", "--kafka-tls", "--kafka-tls-cert", os.Args[0], "--kafka-tls-key", "c.key"}, nil, []string{`--kafka-tls-key="c.key": cannot read`}},
		// Addresses and names.
		{"empty broker in the list", []string{"serve", "--kafka-brokers", "a:9092,,b:9092"}, nil, []string{"--kafka-brokers"}},
		{"broker without a port", []string{"serve", "--kafka-brokers", "kafka1"}, nil, []string{"--kafka-brokers", "host:port"}},
		{"listen without a host part", []string{"serve", "--listen", "8080"}, nil, []string{"--listen", "host:port"}},
		{"empty listen", []string{"serve", "--listen", ""}, nil, []string{"--listen"}},
		{"empty data dir", []string{"serve", "--data-dir", ""}, nil, []string{"--data-dir"}},
		{"embedded broker off loopback", []string{"serve", "--broker-listen", "0.0.0.0:9092"}, nil, []string{"--broker-listen", "loopback"}},
		{"topic with a space", []string{"serve", "--topic", "my topic"}, nil, []string{"--topic"}},
		{"client id with a space", []string{"serve", "--kafka-client-id", "my client"}, nil, []string{"--kafka-client-id"}},
		{"instance without a port", []string{"serve", "--instance", "10.0.0.1"}, nil, []string{"--instance"}},
		{"redis address without a port", []string{"serve", "--redis-addr", "redis", "--postgres-dsn", "postgres://h/db", "--cluster-secret", secretValue}, nil, []string{"--redis-addr"}},
		{"redis password without an address", []string{"serve"}, map[string]string{"PARLEY_REDIS_PASSWORD": secretValue}, []string{"PARLEY_REDIS_PASSWORD", "needs --redis-addr"}},
		{"redis tls without an address", []string{"serve", "--redis-tls"}, nil, []string{"--redis-tls", "needs --redis-addr"}},
		{"sentinel master without an address", []string{"serve", "--redis-sentinel-master", "m"}, nil, []string{"--redis-sentinel-master", "needs --redis-addr"}},
		{"sentinel password without a master", []string{"serve", "--redis-addr", "127.0.0.1:6379", "--postgres-dsn", "postgres://h/db", "--cluster-secret", secretValue},
			map[string]string{"PARLEY_REDIS_SENTINEL_PASSWORD": secretValue}, []string{"PARLEY_REDIS_SENTINEL_PASSWORD", "needs --redis-sentinel-master"}},
		{"a bad sentinel address", []string{"serve", "--redis-addr", "127.0.0.1:26379,nowhere", "--redis-sentinel-master", "m", "--postgres-dsn", "postgres://h/db", "--cluster-secret", secretValue}, nil, []string{"--redis-addr", "nowhere"}},
		{"redis user without a password", []string{"serve", "--redis-addr", "127.0.0.1:6379", "--redis-user", "parley", "--postgres-dsn", "postgres://h/db", "--cluster-secret", secretValue}, nil, []string{"--redis-user", "needs --redis-password"}},
		{"negative redis db", []string{"serve", "--redis-addr", "127.0.0.1:6379", "--redis-db", "-1", "--postgres-dsn", "postgres://h/db", "--cluster-secret", secretValue}, nil, []string{"--redis-db", "0 or more"}},
		{"redis CA file without TLS", []string{"serve", "--redis-addr", "127.0.0.1:6379", "--redis-tls-ca", os.Args[0], "--postgres-dsn", "postgres://h/db", "--cluster-secret", secretValue}, nil, []string{"--redis-tls-ca", "needs --redis-tls"}},
		{"redis client key without its certificate", []string{"serve", "--redis-addr", "127.0.0.1:6379", "--redis-tls", "--redis-tls-key", os.Args[0], "--postgres-dsn", "postgres://h/db", "--cluster-secret", secretValue}, nil, []string{"--redis-tls-cert", "required with --redis-tls-key"}},
		{"missing redis CA file", []string{"serve", "--redis-addr", "127.0.0.1:6379", "--redis-tls", "--redis-tls-ca", "ca.pem", "--postgres-dsn", "postgres://h/db", "--cluster-secret", secretValue}, nil, []string{`--redis-tls-ca="ca.pem": cannot read`}},
		{"replay with a redis user and no password", []string{"replay", "--projection", "cache", "--redis-addr", "127.0.0.1:6379", "--redis-user", "u", "--postgres-dsn", "postgres://h/db"}, nil, []string{"--redis-user", "needs --redis-password"}},
		{"bad schema", []string{"serve", "--postgres-schema", "Parley"}, nil, []string{"--postgres-schema"}},
		{"header name with a space", []string{"serve", "--trusted-account-header", "X Account"}, nil, []string{"--trusted-account-header"}},
		{"same identity headers", []string{"serve", "--trusted-device-header", "x-parley-account"}, nil, []string{"--trusted-device-header", "--trusted-account-header"}},
		{"postgres without redis", []string{"serve", "--cluster-secret", secretValue}, map[string]string{"PARLEY_POSTGRES_DSN": "postgres://h/db"}, []string{"PARLEY_POSTGRES_DSN and --redis-addr go together"}},
		{"scale-out without cluster secret", []string{"serve", "--postgres-dsn", "postgres://h/db", "--redis-addr", "127.0.0.1:6379"}, nil, []string{"--cluster-secret"}},
		// Secrets: named, never shown.
		{"short token secret in env", []string{"serve"}, map[string]string{"PARLEY_TOKEN_SECRET": secretValue[:20]}, []string{"PARLEY_TOKEN_SECRET", "at least 32 bytes"}},
		{"short token secret as flag", []string{"serve", "--token-secret", secretValue[:20]}, nil, []string{"--token-secret", "at least 32 bytes"}},
		{"short service credential", []string{"serve"}, map[string]string{"PARLEY_SERVICE_CREDENTIAL": secretValue[:10]}, []string{"PARLEY_SERVICE_CREDENTIAL", "16 bytes"}},
		{"service credential with a space", []string{"serve", "--service-credential", secretValue + " x"}, nil, []string{"--service-credential", "white space"}},
		{"short cluster secret", []string{"serve"}, map[string]string{"PARLEY_CLUSTER_SECRET": secretValue[:10]}, []string{"PARLEY_CLUSTER_SECRET", "16 bytes"}},
		{"short trusted gateway secret", []string{"serve"}, map[string]string{"PARLEY_TRUSTED_GATEWAY_SECRET": secretValue[:10]}, []string{"PARLEY_TRUSTED_GATEWAY_SECRET", "16 bytes"}},
		{"unparsable postgres dsn", []string{"serve", "--redis-addr", "127.0.0.1:6379", "--cluster-secret", secretValue},
			map[string]string{"PARLEY_POSTGRES_DSN": "postgres://parley:" + secretValue + "@db:port/parley"}, []string{"PARLEY_POSTGRES_DSN", "cannot parse"}},
		{"directory url with credentials and a wrong scheme", []string{"serve"}, map[string]string{"PARLEY_DIRECTORY_URL": "ftp://svc:" + secretValue + "@users"}, []string{"PARLEY_DIRECTORY_URL", "http(s)://"}},
		{"typo of a secret flag", []string{"serve", "--token-secrt=" + secretValue}, nil, []string{"unknown flag --token-secrt"}},
		{"malformed flag holding a secret", []string{"serve", "---token-secret=" + secretValue}, nil, []string{"bad flag syntax"}},
		{"unquoted secret with a space", []string{"serve", "--postgres-dsn", "host=db", "password=" + secretValue}, nil, []string{"1 unexpected argument"}},
		// The command line.
		{"unknown flag", []string{"serve", "--nope"}, nil, []string{"unknown flag --nope"}},
		{"flag without its value", []string{"serve", "--listen"}, nil, []string{"--listen needs a value"}},
		{"stray argument", []string{"serve", "extra"}, nil, []string{"1 unexpected argument"}},
		{"unknown command", []string{"srve"}, nil, []string{`unknown command "srve"`}},
		{"every problem at once", []string{"serve", "--lease", "0s", "--rate-burst", "0", "--nope"},
			map[string]string{"PARLEY_PARTITIONS": "x", "PARLEY_KAFKA_TLS": "on", "PARLEY_TOKEN_SECRET": "short"},
			[]string{"6 problems", "--lease", "--rate-burst", "--nope", "PARLEY_PARTITIONS", "PARLEY_KAFKA_TLS", "PARLEY_TOKEN_SECRET"}},
		// token.
		{"negative token ttl", []string{"token", "--account", "alice", "--ttl", "-5m"}, nil, []string{`--ttl="-5m"`}},
		{"zero token ttl", []string{"token", "--account", "alice", "--ttl", "0s"}, nil, []string{"--ttl"}},
		{"token ttl over 30 days", []string{"token", "--account", "alice"}, map[string]string{"PARLEY_TTL": "721h"}, []string{`PARLEY_TTL="721h"`, "720h"}},
		{"token without account", []string{"token"}, nil, []string{"--account"}},
		{"token for a bad device", []string{"token", "--account", "alice", "--device", "bad/id"}, nil, []string{"--device"}},
		{"token with a short secret", []string{"token", "--account", "alice"}, map[string]string{"PARLEY_TOKEN_SECRET": secretValue[:31]}, []string{"PARLEY_TOKEN_SECRET"}},
		// broker.
		{"broker off loopback", []string{"broker", "--broker-listen", "10.0.0.1:9092"}, nil, []string{"--broker-listen"}},
		{"broker with an empty data dir", []string{"broker"}, map[string]string{"PARLEY_DATA_DIR": ""}, []string{"PARLEY_DATA_DIR"}},
		// logout.
		{"logout without account", []string{"logout"}, nil, []string{"--account"}},
		{"logout with no broker", []string{"logout", "--account", "alice", "--kafka-brokers", ""}, nil, []string{"--kafka-brokers"}},
		// tap.
		{"tap in Parley's push group", []string{"tap", "--group", push.Name}, nil, []string{`--group="parley.projection.push"`, "Parley's own"}},
		{"tap in Parley's group by env, in capitals", []string{"tap"}, map[string]string{"PARLEY_GROUP": "PARLEY.projection.store"}, []string{"PARLEY_GROUP"}},
		{"tap with an unversioned type", []string{"tap", "--types", "MessageSent"}, nil, []string{"--types", "did you mean MessageSent.v1", "GroupCreated.v1", "UserLoggedOut.v1"}},
		{"tap with an empty type", []string{"tap", "--types", "MessageSent.v1,"}, nil, []string{"--types"}},
		{"tap from a time with a group", []string{"tap", "--group", "g", "--from", time.Now().Format(time.RFC3339)}, nil, []string{"--from", "without --group"}},
		{"tap from yesterday", []string{"tap", "--from", "yesterday"}, nil, []string{"--from", "RFC 3339"}},
		{"tap idle exit too short", []string{"tap", "--idle-exit", "1ns"}, nil, []string{"--idle-exit"}},
		{"tap negative max events", []string{"tap", "--max-events", "-1"}, nil, []string{"--max-events"}},
		{"tap negative duration", []string{"tap", "--duration", "-1s"}, nil, []string{"--duration"}},
		{"tap epoch zero", []string{"tap", "--log-epoch", "0"}, nil, []string{"--log-epoch"}},
		// replay.
		{"replay of conversations without PostgreSQL", []string{"replay", "--projection", "conversations"}, nil, []string{"--postgres-dsn"}},
		{"replay of push, not a read model", []string{"replay", "--projection", "push", "--postgres-dsn", "postgres://h/db"}, nil, []string{"--projection", "store, cache, groups, conversations or all"}},
		{"replay of an unknown projection", []string{"replay", "--projection", "stores", "--postgres-dsn", "postgres://h/db"}, nil, []string{"--projection", "store, cache, groups, conversations or all"}},
		{"replay from latest", []string{"replay", "--projection", "cache", "--redis-addr", "127.0.0.1:6379", "--postgres-dsn", "postgres://h/db", "--from", "latest"}, nil, []string{"--from"}},
		{"replay of the store without PostgreSQL", []string{"replay", "--projection", "store"}, nil, []string{"--postgres-dsn"}},
		{"replay with an unparsable dsn", []string{"replay", "--projection", "store"}, map[string]string{"PARLEY_POSTGRES_DSN": "host=db password=" + secretValue + " port=x"}, []string{"PARLEY_POSTGRES_DSN", "cannot parse"}},
		{"replay with zero partitions", []string{"replay", "--projection", "store", "--postgres-dsn", "postgres://h/db", "--partitions", "0"}, nil, []string{"--partitions"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(t.TempDir()) // nothing may land in the package directory
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			stdout, stderr, err := runCapture(tc.args...)
			if err == nil {
				t.Fatalf("accepted; stdout %q", stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q:\n%v", w, err)
				}
			}
			if stdout != "" {
				t.Errorf("printed on stdout: %q", stdout)
			}
			if all := err.Error() + stdout + stderr; strings.Contains(all, secretValue) || strings.Contains(all, secretValue[:10]) {
				t.Errorf("a secret was printed:\n%s", all)
			}
		})
	}
}

// secretFlags is every flag, per command, whose value is a secret or may
// hold one (a DSN with a password, a URL with credentials).
var secretFlags = map[string][]string{
	"serve":  {"token-secret", "kafka-sasl-password", "service-credential", "cluster-secret", "trusted-gateway-secret", "postgres-dsn", "directory-url", "redis-password", "redis-sentinel-password"},
	"token":  {"token-secret"},
	"replay": {"postgres-dsn"},
}

// A secret set in the environment shows as (set) in the usage, and a typo
// (whose error the usage used to follow) shows none of it either.
func TestSecretsNeverPrinted(t *testing.T) {
	for cmd, names := range secretFlags {
		for _, name := range names {
			t.Run(cmd+" "+name, func(t *testing.T) {
				t.Setenv(envName(name), secretValue)
				stdout, stderr, err := runCapture(cmd, "-h")
				if err != nil {
					t.Fatalf("-h: %v", err)
				}
				if line := "  --" + name + " secret   " + envName(name) + " (set)\n"; !strings.Contains(stdout, line) {
					t.Errorf("usage has no line %q:\n%s", line, stdout)
				}
				if strings.Contains(stdout+stderr, secretValue) {
					t.Errorf("-h printed the secret:\n%s", stdout+stderr)
				}
				stdout, stderr, err = runCapture(cmd, "--"+name+"x")
				if err == nil || strings.Contains(err.Error()+stdout+stderr, secretValue) {
					t.Errorf("a typo printed the secret or was accepted: %v\n%s%s", err, stdout, stderr)
				}
			})
		}
	}
}

// An environment variable and the flag of the same name are one parsing
// path: they accept and refuse the same text, give the same
// configuration, and the same message but for the name.
func TestEnvParsesLikeFlags(t *testing.T) {
	tests := []struct{ flag, value string }{
		{"partitions", "8"},
		{"partitions", "010"},
		{"partitions", "+8"},
		{"partitions", "8 partitions"},
		{"partitions", " 8"},
		{"partitions", "0x10"},
		{"rate-limit", "1e3"},
		{"rate-limit", "1000"},
		{"kafka-tls", "TRUE"},
		{"kafka-tls", "t"},
		{"kafka-tls", "0"},
		{"kafka-tls", "yes"},
		{"kafka-tls", "on"},
		{"kafka-tls", ""},
		{"lease", "2m"},
		{"lease", "0s"},
		{"lease", "120"},
		{"listen", "127.0.0.1:9999"},
		{"token-secret", secretValue},
		{"token-secret", "short"},
		{"log-level", "WARN"},
	}
	for _, tc := range tests {
		t.Run(tc.flag+"="+tc.value, func(t *testing.T) {
			byFlag, errFlag := parseServe([]string{"--" + tc.flag + "=" + tc.value}, &bytes.Buffer{})
			t.Setenv(envName(tc.flag), tc.value)
			byEnv, errEnv := parseServe(nil, &bytes.Buffer{})
			if (errFlag == nil) != (errEnv == nil) {
				t.Fatalf("flag: %v; environment: %v", errFlag, errEnv)
			}
			if errFlag != nil {
				if got, want := errEnv.Error(), strings.ReplaceAll(errFlag.Error(), "--"+tc.flag, envName(tc.flag)); got != want {
					t.Errorf("environment: %s\nflag says: %s", got, want)
				}
				return
			}
			byFlag.Logger, byEnv.Logger = nil, nil
			if !reflect.DeepEqual(byFlag, byEnv) {
				t.Errorf("configurations differ:\nflag %+v\nenv  %+v", byFlag, byEnv)
			}
		})
	}
}

// The environment sets what the command line does not; the command line
// wins, and a bad variable for a flag given on the command line is not
// even read.
func TestEnvAndFlags(t *testing.T) {
	t.Setenv("PARLEY_LISTEN", "127.0.0.1:9999")
	t.Setenv("PARLEY_LEASE", "2m")
	t.Setenv("PARLEY_PARTITIONS", "not a number")
	t.Setenv("PARLEY_KAFKA_TLS", "1")
	t.Setenv("PARLEY_KAFKA_BROKERS", "kafka.internal:9093")
	cfg, err := parseServe([]string{"--lease", "3m", "--partitions", "8"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9999" || cfg.Gateway.Lease != 3*time.Minute || cfg.Kafka.Partitions != 8 || !cfg.Kafka.Security.TLS {
		t.Errorf("listen %q lease %v partitions %d tls %v", cfg.Listen, cfg.Gateway.Lease, cfg.Kafka.Partitions, cfg.Kafka.Security.TLS)
	}
}

// The defaults are valid and are the documented ones; a full scale-out
// configuration is accepted with its secrets in place.
func TestServeConfig(t *testing.T) {
	cfg, err := parseServe(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Gateway
	if cfg.Listen != "127.0.0.1:8080" || g.Lease != 10*time.Minute || g.Heartbeat != time.Minute || g.RatePerSecond != 100 ||
		g.RateBurst != 200 || g.ReadBufferBytes != 1024 || cfg.GCPercent != 400 || cfg.StoreCacheBytes != 128<<20 || cfg.API.SendTimeout != 5*time.Second || cfg.Kafka.Partitions != 16 || len(cfg.Kafka.Brokers) != 0 ||
		cfg.API.SendRate != 256<<10 || cfg.API.SendBurst != 1<<20 || cfg.MinFreeDisk != 256<<20 {
		t.Errorf("defaults: %+v", cfg)
	}
	// A failure repeated for every request writes a few lines and a count.
	if _, ok := cfg.Logger.Handler().(*logthrottle.Handler); !ok {
		t.Errorf("the log is not throttled: %T", cfg.Logger.Handler())
	}
	if off, err := parseServe([]string{"--account-send-rate", "0"}, &bytes.Buffer{}); err != nil || off.API.SendRate >= 0 {
		t.Errorf("--account-send-rate 0 gives SendRate %v (%v), want negative: no limit", off.API.SendRate, err)
	}
	t.Setenv("PARLEY_CLUSTER_SECRET", secretValue)
	t.Setenv("PARLEY_KAFKA_SASL_PASSWORD", secretValue)
	cfg, err = parseServe([]string{"--roles", "gateway", "--kafka-brokers", " k1:9092, k2:9092 ", "--postgres-dsn", "postgres://u:" + secretValue + "@db/parley",
		"--redis-addr", "127.0.0.1:6379", "--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-user", "u", "--log-level", "debug"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Kafka.Brokers, []string{"k1:9092", "k2:9092"}) || cfg.Roles != (node.Roles{Gateway: true}) || string(cfg.ClusterSecret) != secretValue ||
		cfg.Kafka.Security.SASLPassword != secretValue || cfg.Postgres == nil || cfg.Redis == nil || cfg.Console {
		t.Errorf("scale-out: %+v", cfg)
	}
	t.Setenv("PARLEY_REDIS_PASSWORD", secretValue)
	cfg, err = parseServe([]string{"--kafka-brokers", "k1:9092", "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-user", "u", "--postgres-dsn", "postgres://h/db", "--redis-addr", "redis.internal:6380", "--redis-user", "parley",
		"--redis-db", "2", "--redis-tls", "--redis-tls-ca", os.Args[0], "--redis-tls-cert", os.Args[0], "--redis-tls-key", os.Args[0], "--redis-prefix", "p:"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (redis.Config{Addr: "redis.internal:6380", Prefix: "p:", User: "parley", Password: secretValue, DB: 2, TLS: true, TLSCAFile: os.Args[0],
		TLSCertFile: os.Args[0], TLSKeyFile: os.Args[0]}); cfg.Redis == nil || !reflect.DeepEqual(*cfg.Redis, want) {
		t.Errorf("redis: %+v, want %+v", cfg.Redis, want)
	}
	t.Setenv("PARLEY_REDIS_SENTINEL_PASSWORD", secretValue+"s")
	cfg, err = parseServe([]string{"--kafka-brokers", "k1:9092", "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-user", "u", "--postgres-dsn", "postgres://h/db", "--redis-addr", "s1:26379,s2:26379",
		"--redis-sentinel-master", "parley-master"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (redis.Config{Sentinels: []string{"s1:26379", "s2:26379"}, SentinelMaster: "parley-master", SentinelPassword: secretValue + "s",
		Prefix: "parley:", Password: secretValue}); cfg.Redis == nil || !reflect.DeepEqual(*cfg.Redis, want) {
		t.Errorf("redis through sentinels: %+v, want %+v", cfg.Redis, want)
	}
}

// help, --help and -h exit 0 and print to stdout: the command list with a
// line each, or a command's flags.
func TestHelp(t *testing.T) {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	tests := []struct {
		name string
		args []string
		want []string
		// commandLines: each of want starts a line, as a command listed
		// by help does.
		commandLines bool
	}{
		{"parley --help", []string{"--help"}, names, true},
		{"parley -h", []string{"-h"}, names, true},
		{"parley help", []string{"help"}, names, true},
		{"parley help help", []string{"help", "help"}, names, true},
		{"parley help -h", []string{"help", "-h"}, names, true},
		{"parley help serve", []string{"help", "serve"}, []string{"usage: parley [serve] [flags]", "--lease duration   PARLEY_LEASE"}, false},
		{"parley serve --help", []string{"serve", "--help"}, []string{"--read-buffer int   PARLEY_READ_BUFFER"}, false},
		{"parley -h after a flag", []string{"--lease", "1m", "-h"}, []string{"usage: parley [serve] [flags]"}, false},
		{"parley token -h", []string{"token", "-h"}, []string{"--ttl duration", "720h"}, false},
		{"parley broker -h", []string{"broker", "-h"}, []string{"--log-fsync   PARLEY_LOG_FSYNC"}, false},
		{"parley logout -h", []string{"logout", "-h"}, []string{"--reason string"}, false},
		{"parley tap -h", []string{"tap", "-h"}, []string{"MessageSent.v1, GroupCreated.v1", "Not parley.*"}, false},
		{"parley replay -h", []string{"replay", "-h"}, []string{"store, cache, groups, conversations or all"}, false},
		{"help after a bad flag", []string{"serve", "--nope", "-h"}, []string{"usage: parley [serve]"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := runCapture(tc.args...)
			if err != nil {
				t.Fatalf("help is an error: %v", err)
			}
			if stderr != "" {
				t.Errorf("stderr: %q", stderr)
			}
			for _, w := range tc.want {
				if tc.commandLines {
					w = "\n  " + w + " "
				}
				if !strings.Contains(stdout, w) {
					t.Errorf("no %q in:\n%s", w, stdout)
				}
			}
		})
	}
}

// What replay's usage offers for --projection is exactly what it accepts.
func TestReplayHelpMatchesProjections(t *testing.T) {
	usage, _, _ := runCapture("replay", "-h")
	m := regexp.MustCompile(`--projection string[^\n]*\n\s*([^\n]*)`).FindStringSubmatch(usage)
	if m == nil {
		t.Fatalf("no --projection in:\n%s", usage)
	}
	for _, p := range []string{"store", "cache", "all", "conversations", "groups", "push"} {
		_, err := parseReplay([]string{"--projection", p, "--postgres-dsn", "postgres://h/db", "--redis-addr", "127.0.0.1:6379"}, &bytes.Buffer{})
		if offered := regexp.MustCompile(`\b` + p + `\b`).MatchString(m[1]); offered != (err == nil) {
			t.Errorf("--projection %s: offered %v, error %v", p, offered, err)
		}
	}
}

// Every consumer group of Parley's own is refused by the tap, so that it
// cannot take partitions from a projector; other groups are accepted.
func TestTapGroups(t *testing.T) {
	for _, g := range []string{store.Name, cache.Name, push.Name, conversations.Name, groups.Name, stream.Name, logout.Name, "parley.anything", " Parley.projection.push"} {
		if _, err := parseTap([]string{"--group", g}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--group") {
			t.Errorf("--group %q: %v", g, err)
		}
	}
	for _, g := range []string{"analytics", "parley-analytics", "team.parley.audit"} {
		if _, err := parseTap([]string{"--group", g}, &bytes.Buffer{}); err != nil {
			t.Errorf("--group %q refused: %v", g, err)
		}
	}
	cfg, err := parseTap([]string{"--types", "MessageSent.v1, GroupCreated.v1", "--from", "2026-01-02T15:04:05Z"}, &bytes.Buffer{})
	if err != nil || !reflect.DeepEqual(cfg.types, map[string]bool{"MessageSent.v1": true, "GroupCreated.v1": true}) || cfg.at.IsZero() {
		t.Errorf("types %v at %v: %v", cfg.types, cfg.at, err)
	}
}

// The error collects problems as errors.Join does.
func TestConfigErrorUnwraps(t *testing.T) {
	_, err := parseServe([]string{"--lease", "0s", "--rate-burst", "0"}, &bytes.Buffer{})
	var ce *configError
	if !errors.As(err, &ce) || len(ce.Unwrap()) != 2 {
		t.Fatalf("got %v", err)
	}
}

// The real binary, as an operator meets it: exit codes, and what goes to
// stdout and stderr. The test binary runs main when asked to by TestMain.
func TestMainExitCodes(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		env         []string
		code        int
		stdout      string
		stderr      string
		emptyStdout bool
	}{
		{"--help", []string{"--help"}, nil, 0, "Commands:", "", false},
		{"help", []string{"help"}, nil, 0, "  replay ", "", false},
		{"serve -h with a secret in env", []string{"serve", "-h"}, []string{"PARLEY_TOKEN_SECRET=" + secretValue}, 0, "PARLEY_TOKEN_SECRET (set)", "", false},
		{"a typo with a secret in env", []string{"serve", "--lisen", "x"}, []string{"PARLEY_TOKEN_SECRET=" + secretValue}, 2, "", "unknown flag --lisen", true},
		{"unknown command", []string{"nope"}, nil, 2, "", `unknown command "nope"`, true},
		{"expired token", []string{"token", "--account", "alice", "--ttl", "-5m"}, nil, 2, "", "--ttl", true},
		{"tap in a projector's group", []string{"tap", "--group", "parley.projection.push"}, nil, 2, "", "--group", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], tc.args...)
			cmd.Dir = t.TempDir()
			cmd.Env = append(append(os.Environ(), runMainEnv+"=1"), tc.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr %s", code, tc.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stdout %q\nstderr %q", stdout.String(), stderr.String())
			}
			if tc.emptyStdout && stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
			if strings.Contains(stdout.String()+stderr.String(), secretValue) {
				t.Error("a secret was printed")
			}
		})
	}
}

// Every flag of every command is in docs/configuration.md with its
// variable, and the documentation names no flag a command lacks.
func TestDocsListEveryFlag(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := regexp.MustCompile("(?m)^## `parley (\\w+)`").FindAllSubmatchIndex(doc, -1)
	documented := map[string][]string{}
	for i, s := range sections {
		end := len(doc)
		if i+1 < len(sections) {
			end = sections[i+1][0]
		}
		cmd := string(doc[s[2]:s[3]])
		for _, m := range regexp.MustCompile("(?m)^\\| `--([a-z-]+)` \\| `(PARLEY_[A-Z_]+)` \\|").FindAllSubmatch(doc[s[0]:end], -1) {
			documented[cmd] = append(documented[cmd], string(m[1])+" "+string(m[2]))
		}
	}
	for _, c := range commands() {
		if c.run == nil {
			continue
		}
		usage, _, _ := runCapture(c.name, "-h")
		var defined []string
		for _, m := range regexp.MustCompile(`(?m)^  --([a-z-]+)(?: \w+)?   (PARLEY_[A-Z_]+)`).FindAllStringSubmatch(usage, -1) {
			defined = append(defined, m[1]+" "+m[2])
		}
		if len(defined) == 0 || !reflect.DeepEqual(sorted(defined), sorted(documented[c.name])) {
			t.Errorf("%s: flags\n%v\ndocumented\n%v", c.name, sorted(defined), sorted(documented[c.name]))
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
