package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/httpapi"
)

// eraseCmd erases an account through a gateway's HTTP API: the server owns
// the key store (on a single node the embedded store, which one process
// opens at a time), so the command is a client of the endpoint a service
// would call.
func eraseCmd(args []string, stdout, _ io.Writer) error {
	f := newFlags("erase", stdout)
	account := f.string("account", "", "account to erase (required)")
	server := f.string("url", "http://127.0.0.1:8080", "a gateway's base URL (its --listen address)")
	cred := f.secret("service-credential", "the server's --service-credential (required)")
	timeout := f.duration("timeout", time.Minute, "how long to wait for the server's answer")
	if err := f.parse(args); err != nil {
		return err
	}
	_, err := domain.ParseAccountID(*account)
	f.checkErr("account", err)
	u, err := url.Parse(*server)
	f.check("url", err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "", "want http(s)://host:port")
	f.check("service-credential", len(*cred) >= httpapi.MinServiceCredentialBytes, "need the server's, at least %d bytes", httpapi.MinServiceCredentialBytes)
	f.check("timeout", *timeout > 0, "want more than 0")
	if err := f.err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	endpoint := strings.TrimSuffix(*server, "/") + httpapi.Prefix + "/accounts/" + url.PathEscape(*account) + "/erase"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer svc:"+*cred)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", *server, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("cannot read the answer of %s: %w", *server, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Code  string `json:"code"`
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		return fmt.Errorf("cannot erase %s: %s %s: %s", *account, resp.Status, e.Code, e.Error)
	}
	var r struct {
		KeysDestroyed []string `json:"keysDestroyed"`
		ErasedAt      int64    `json:"erasedAt"`
		Records       int      `json:"records"`
		Applied       bool     `json:"applied"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("cannot read the answer of %s: %w", *server, err)
	}
	fmt.Fprintf(stdout, "erased %s at %s: %d data keys destroyed, %d AccountErased.v1 records on the log\n",
		*account, time.UnixMilli(r.ErasedAt).UTC().Format(time.RFC3339Nano), len(r.KeysDestroyed), r.Records)
	if r.Applied {
		fmt.Fprintln(stdout, "the gateway's read models have applied it")
	} else {
		fmt.Fprintln(stdout, "the gateway's read models had not applied it yet; they will, in log order")
	}
	return nil
}
