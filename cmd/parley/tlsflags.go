package main

import "os"

// tlsFlags are the files of a client's TLS to a service (prefix "kafka"
// or "redis"): the CAs to trust and a client certificate, all of which
// need --<prefix>-tls.
type tlsFlags struct {
	caFile, certFile, keyFile *string
}

// defineTLSFiles defines --<prefix>-tls-ca, -tls-cert and -tls-key on f;
// service names the server in their usage.
func defineTLSFiles(f *flagSet, prefix, service string) tlsFlags {
	return tlsFlags{
		caFile:   f.string(prefix+"-tls-ca", "", "PEM file of CAs to trust for "+service+"; empty uses the system pool"),
		certFile: f.string(prefix+"-tls-cert", "", "PEM file of a client certificate to present to "+service+", for mutual TLS (needs --"+prefix+"-tls-key)"),
		keyFile:  f.string(prefix+"-tls-key", "", "PEM file of the client certificate's private key (needs --"+prefix+"-tls-cert)"),
	}
}

// check records every problem of the files, tls being --<prefix>-tls.
func (t tlsFlags) check(f *flagSet, prefix string, tls bool) {
	needsTLS := "needs " + f.name(prefix+"-tls")
	for _, file := range []struct {
		flag string
		path *string
	}{{"-tls-ca", t.caFile}, {"-tls-cert", t.certFile}, {"-tls-key", t.keyFile}} {
		if *file.path == "" {
			continue
		}
		f.check(prefix+file.flag, tls, "%s", needsTLS)
		_, err := os.Stat(*file.path)
		f.check(prefix+file.flag, err == nil, "cannot read the file")
	}
	f.check(prefix+"-tls-cert", *t.certFile != "" || *t.keyFile == "", "required with %s", f.name(prefix+"-tls-key"))
	f.check(prefix+"-tls-key", *t.keyFile != "" || *t.certFile == "", "required with %s", f.name(prefix+"-tls-cert"))
}
