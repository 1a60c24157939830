package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/parley-chat/parley/domain"
)

// eraseCmd erases an account through a gateway's HTTP API: the server owns
// the key store (on a single node the embedded store, which one process
// opens at a time), so the command is a client of the endpoint a service
// would call.
func eraseCmd(args []string, stdout, _ io.Writer) error {
	f := newFlags("erase", stdout)
	account := f.string("account", "", "account to erase (required)")
	srv := defineServiceClient(f)
	timeout := f.duration("timeout", time.Minute, "how long to wait for the server's answer")
	if err := f.parse(args); err != nil {
		return err
	}
	_, err := domain.ParseAccountID(*account)
	f.checkErr("account", err)
	srv.check(f)
	f.check("timeout", *timeout > 0, "want more than 0")
	if err := f.err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp, err := srv.do(ctx, http.MethodPost, "/accounts/"+url.PathEscape(*account)+"/erase")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cannot erase %s: %w", *account, answerError(resp))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("cannot read the answer of %s: %w", *srv.url, err)
	}
	var r struct {
		KeysDestroyed []string `json:"keysDestroyed"`
		ErasedAt      int64    `json:"erasedAt"`
		Records       int      `json:"records"`
		Applied       bool     `json:"applied"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("cannot read the answer of %s: %w", *srv.url, err)
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
