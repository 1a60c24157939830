package main

import (
	"fmt"
	"io"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/auth"
)

// maxTokenTTL bounds `parley token --ttl`. A token cannot be revoked short
// of rotating the secret or logging the device out, so a development token
// should not outlive a month.
const maxTokenTTL = 30 * 24 * time.Hour

func token(args []string, stdout, _ io.Writer) error {
	f := newFlags("token", stdout)
	account := f.string("account", "", "account id (required)")
	device := f.string("device", "default", "device id")
	ttl := f.duration("ttl", 24*time.Hour, "how long the token is valid, at most 720h (30 days)")
	dataDir := f.string("data-dir", "parley-data", "data directory whose token.secret signs the token")
	secret := f.secret("token-secret", fmt.Sprintf("HS256 secret, at least %d bytes; empty uses <data-dir>/token.secret", auth.MinSecretBytes))
	issuer := f.string("token-issuer", "", "iss of the token: the server's --token-issuer")
	audience := f.string("token-audience", "", "aud of the token: the server's --token-audience")
	maxLifetime := f.duration("token-max-lifetime", auth.DefaultMaxLifetime, "refuse a --ttl longer than this: the server's --token-max-lifetime")
	if err := f.parse(args); err != nil {
		return err
	}
	_, err := domain.ParseAccountID(*account)
	f.checkErr("account", err)
	_, err = domain.ParseDeviceID(*device)
	f.checkErr("device", err)
	f.check("ttl", *ttl > 0 && *ttl <= maxTokenTTL && *ttl <= *maxLifetime, "want more than 0 and at most 720h (30 days) and --token-max-lifetime")
	f.check("token-max-lifetime", *maxLifetime >= time.Minute, "want at least 1m")
	f.check("data-dir", *dataDir != "" || *secret != "", "cannot be empty")
	f.check("token-secret", *secret == "" || len(*secret) >= auth.MinSecretBytes, "need at least %d bytes", auth.MinSecretBytes)
	if err := f.err(); err != nil {
		return err
	}
	key := []byte(*secret)
	if len(key) == 0 {
		if key, err = auth.LoadOrCreateSecret(*dataDir); err != nil {
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
