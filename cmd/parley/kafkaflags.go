package main

import (
	"github.com/parley-chat/parley/infra/kafka"
)

// kafkaFlags are the options of a connection's security to external
// brokers, the same for every command that makes one.
type kafkaFlags struct {
	tls            *bool
	files          tlsFlags
	mechanism      *string
	user, password *string
}

// defineKafkaSecurity defines the brokers' TLS and SASL options on f.
func defineKafkaSecurity(f *flagSet) kafkaFlags {
	return kafkaFlags{
		tls:       f.bool("kafka-tls", false, "connect to the brokers over TLS"),
		files:     defineTLSFiles(f, "kafka", "the brokers"),
		mechanism: f.string("kafka-sasl-mechanism", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty for none"),
		user:      f.string("kafka-sasl-user", "", "SASL user"),
		password:  f.secret("kafka-sasl-password", "SASL password"),
	}
}

// check records every problem of the options.
func (k kafkaFlags) check(f *flagSet) {
	k.files.check(f, "kafka", *k.tls)
	switch *k.mechanism {
	case "":
		f.check("kafka-sasl-user", *k.user == "", "needs %s", f.name("kafka-sasl-mechanism"))
		f.check("kafka-sasl-password", *k.password == "", "needs %s", f.name("kafka-sasl-mechanism"))
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		f.check("kafka-sasl-user", *k.user != "", "required with %s", f.name("kafka-sasl-mechanism"))
		f.check("kafka-sasl-password", *k.password != "", "required with %s", f.name("kafka-sasl-mechanism"))
	default:
		f.check("kafka-sasl-mechanism", false, "want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (in capitals)")
	}
}

// security is the connection's security the options describe.
func (k kafkaFlags) security() kafka.Security {
	return kafka.Security{TLS: *k.tls, TLSCAFile: *k.files.caFile, TLSCertFile: *k.files.certFile, TLSKeyFile: *k.files.keyFile,
		SASLMechanism: *k.mechanism, SASLUser: *k.user, SASLPassword: *k.password}
}
