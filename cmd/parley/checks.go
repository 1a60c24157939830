package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/events"
)

// Value rules shared by several commands. Each returns a message to follow
// the flag's name, never the value itself: flagSet.check adds the value
// unless the flag is a secret.

// hostPort checks host:port with a port within minPort..65535 (0 lets the
// system pick one, for listeners).
func hostPort(s string, minPort int) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < minPort || n > 65535 {
		return fmt.Errorf("want a port within %d..65535", minPort)
	}
	return nil
}

// checkLoopback checks the embedded broker's address: it has no
// authentication, so it listens on loopback only.
func checkLoopback(s string) error {
	if err := hostPort(s, 0); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(s)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return errors.New("want a loopback host (127.0.0.1, ::1 or localhost): the broker has no authentication")
	}
	return nil
}

// brokerList splits a comma-separated list of host:port, trimming spaces
// around each; an empty entry is an error, not skipped.
func brokerList(s string) ([]string, error) {
	var out []string
	for _, b := range strings.Split(s, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			return nil, errors.New("want comma-separated host:port, with no empty entry")
		}
		if err := hostPort(b, 1); err != nil {
			return nil, fmt.Errorf("broker %q: %w", b, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// validTopic is Kafka's rule for topic names.
func validTopic(s string) bool {
	return len(s) >= 1 && len(s) <= 249 && s != "." && s != ".." && onlyChars(s, "._-")
}

// onlyChars: s has ASCII letters, digits and the bytes of extra only.
func onlyChars(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

// validHeaderName is RFC 9110's token, the syntax of a header field name.
func validHeaderName(s string) bool {
	return s != "" && onlyChars(s, "!#$%&'*+-.^_`|~")
}

// reservedGroupPrefix starts the consumer groups of Parley's own
// projectors (store.Name "parley.projection.store", cache.Name, push.Name,
// ...). A tool that joined one would take partitions away from the
// projector, whose events would then never be applied.
const reservedGroupPrefix = "parley."

// checkGroup refuses Parley's own consumer groups, in any case and with
// any spaces around, so that a near miss is not taken for a new group.
func checkGroup(g string) error {
	if strings.HasPrefix(strings.ToLower(strings.TrimSpace(g)), reservedGroupPrefix) {
		return fmt.Errorf("consumer groups starting with %q are Parley's own projectors'; joining one would steal their partitions, choose another name", reservedGroupPrefix)
	}
	return nil
}

// eventTypes parses a comma-separated list of versioned event names; nil
// for an empty list (every event). An unknown name is refused, not
// silently matched against nothing.
func eventTypes(s string) (map[string]bool, error) {
	if s == "" {
		return nil, nil
	}
	known := events.Names()
	types := map[string]bool{}
	var unknown []string
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		if !slices.Contains(known, t) {
			u := strconv.Quote(t)
			if slices.Contains(known, t+".v1") {
				u += " (did you mean " + t + ".v1?)"
			}
			unknown = append(unknown, u)
			continue
		}
		types[t] = true
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown event name %s: want versioned names among %s", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return types, nil
}

// startAt parses --from: earliest, latest (if allowed) or an RFC 3339
// time. It returns the zero time for earliest and latest.
func startAt(s string, latest bool) (time.Time, error) {
	if s == "earliest" || latest && s == "latest" {
		return time.Time{}, nil
	}
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		if latest {
			return time.Time{}, errors.New("want earliest, latest or an RFC 3339 time such as 2026-01-02T15:04:05Z")
		}
		return time.Time{}, errors.New("want earliest or an RFC 3339 time such as 2026-01-02T15:04:05Z")
	}
	return at, nil
}

// checkURL checks an http(s) base URL without repeating it: it may carry
// credentials in its user part.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want http(s)://host[:port][/path]")
	}
	return nil
}
