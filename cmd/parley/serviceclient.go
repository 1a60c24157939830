package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/parley-chat/parley/transport/httpapi"
)

// serviceClient calls a gateway's HTTP API with the service credential,
// as the commands that act through a running server do (erase, backup).
type serviceClient struct {
	url  *string
	cred *string
}

// defineServiceClient defines the flags of a command that calls a
// gateway's HTTP API as a service.
func defineServiceClient(f *flagSet) serviceClient {
	return serviceClient{
		url:  f.string("url", "http://127.0.0.1:8080", "a gateway's base URL (its --listen address)"),
		cred: f.secret("service-credential", "the server's --service-credential (required)"),
	}
}

// check reports the flags' problems to f.
func (c serviceClient) check(f *flagSet) {
	u, err := url.Parse(*c.url)
	f.check("url", err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "", "want http(s)://host:port")
	f.check("service-credential", len(*c.cred) >= httpapi.MinServiceCredentialBytes, "need the server's, at least %d bytes", httpapi.MinServiceCredentialBytes)
}

// do sends a request without a body to path under the API's prefix.
func (c serviceClient) do(ctx context.Context, method, path string) (*http.Response, error) {
	endpoint := strings.TrimSuffix(*c.url, "/") + httpapi.Prefix + path
	req, err := http.NewRequestWithContext(ctx, method, endpoint, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer svc:"+*c.cred)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", *c.url, err)
	}
	return resp, nil
}

// answerError is the error a reply other than 200 stands for: its status
// and the API's code and message.
func answerError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e struct {
		Code  string `json:"code"`
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return fmt.Errorf("%s %s: %s", resp.Status, e.Code, e.Error)
}
