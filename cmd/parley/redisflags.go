package main

import (
	"strings"

	"github.com/parley-chat/parley/infra/redis"
)

// redisFlags are the options of a connection to Redis, the same for every
// command that makes one.
type redisFlags struct {
	addr, prefix, user, password     *string
	files                            tlsFlags
	sentinelMaster, sentinelPassword *string
	db                               *int
	tls                              *bool
}

// defineRedis defines the Redis options on f; addrUsage says what the
// server is for.
func defineRedis(f *flagSet, addrUsage string) redisFlags {
	return redisFlags{
		addr:     f.string("redis-addr", "", addrUsage),
		prefix:   f.string("redis-prefix", redis.DefaultPrefix, "prefix of every Redis key; empty means the default"),
		user:     f.string("redis-user", "", "Redis ACL user; empty is the default user (needs --redis-password)"),
		password: f.secret("redis-password", "Redis password; empty sends none"),
		db:       f.int("redis-db", 0, "Redis logical database, 0 or more"),
		tls:      f.bool("redis-tls", false, "connect to Redis over TLS"),
		files:    defineTLSFiles(f, "redis", "Redis"),
		sentinelMaster: f.string("redis-sentinel-master", "",
			"the master's name in Redis Sentinel: --redis-addr then lists the Sentinels (host:port,host:port,...), which say where the master is and follow its failovers"),
		sentinelPassword: f.secret("redis-sentinel-password", "the Sentinels' password (their requirepass); empty sends none (needs --redis-sentinel-master)"),
	}
}

// addrs are the addresses of --redis-addr: one server, or with
// --redis-sentinel-master the Sentinels, comma-separated.
func (r redisFlags) addrs() []string {
	if *r.sentinelMaster == "" {
		return []string{*r.addr}
	}
	return strings.Split(*r.addr, ",")
}

// check records every problem of the options. An option of the connection
// without --redis-addr is one: it would be ignored.
func (r redisFlags) check(f *flagSet) {
	if *r.addr != "" {
		for _, a := range r.addrs() {
			f.checkErr("redis-addr", hostPort(a, 1))
		}
	} else {
		needsAddr := "needs " + f.name("redis-addr")
		f.check("redis-user", *r.user == "", "%s", needsAddr)
		f.check("redis-password", *r.password == "", "%s", needsAddr)
		f.check("redis-db", *r.db == 0, "%s", needsAddr)
		f.check("redis-tls", !*r.tls, "%s", needsAddr)
		f.check("redis-sentinel-master", *r.sentinelMaster == "", "%s", needsAddr)
	}
	f.check("redis-sentinel-password", *r.sentinelPassword == "" || *r.sentinelMaster != "", "needs %s", f.name("redis-sentinel-master"))
	f.check("redis-user", *r.user == "" || *r.password != "", "needs %s", f.name("redis-password"))
	f.check("redis-db", *r.db >= 0, "want 0 or more")
	r.files.check(f, "redis", *r.tls)
}

// config is the connection the options describe.
func (r redisFlags) config() redis.Config {
	c := redis.Config{Addr: *r.addr, Prefix: *r.prefix, User: *r.user, Password: *r.password, DB: *r.db,
		TLS: *r.tls, TLSCAFile: *r.files.caFile, TLSCertFile: *r.files.certFile, TLSKeyFile: *r.files.keyFile}
	if *r.sentinelMaster != "" {
		c.Addr, c.Sentinels, c.SentinelMaster, c.SentinelPassword = "", r.addrs(), *r.sentinelMaster, *r.sentinelPassword
	}
	return c
}
