package routes

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

// HTTPDirectory asks the user service for an account's devices:
//
//	GET <base>/accounts/<account>/devices  →  200 {"devices": ["phone", "laptop"]}
//
// Device ids are validated; a 404 means the account has none.
type HTTPDirectory struct {
	base   string
	client *http.Client
}

// NewHTTPDirectory returns a directory at base (for example
// http://users.internal:8080) with a bounded timeout.
func NewHTTPDirectory(base string) (*HTTPDirectory, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("directory url %q must be http(s)://host[:port]", base)
	}
	return &HTTPDirectory{base: base, client: &http.Client{Timeout: 2 * time.Second}}, nil
}

// Devices implements Directory.
func (d *HTTPDirectory) Devices(ctx context.Context, account domain.AccountID) ([]domain.UniqueID, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/accounts/"+url.PathEscape(string(account))+"/devices", nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the user service: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("user service answered %s", resp.Status)
	}
	var body struct {
		Devices []string `json:"devices"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return nil, fmt.Errorf("cannot read the user service's answer: %w", err)
	}
	out := make([]domain.UniqueID, 0, len(body.Devices))
	for _, dev := range body.Devices {
		id, err := domain.ParseDeviceID(dev)
		if err != nil {
			return nil, fmt.Errorf("user service listed a bad device: %w", err)
		}
		out = append(out, domain.NewUniqueID(account, id))
	}
	return out, nil
}
