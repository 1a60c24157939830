// Package domain holds Parley's core concepts — accounts, devices,
// conversations, messages and groups — with the rules that keep them valid.
// It imports only the standard library and uuid: wire and storage shapes live
// in events, transport and infra, which map to and from these types.
package domain

import (
	"fmt"
	"strings"
)

// MaxIDLen is the longest account, device, group or client message id, in bytes.
const MaxIDLen = 64

// AccountID names a user account. It is 1..MaxIDLen characters of
// [A-Za-z0-9._@-]; the characters '/' and ':' are reserved as separators.
type AccountID string

// DeviceID names one device (or app install) of an account.
type DeviceID string

// GroupID names a group conversation. The server generates it.
type GroupID string

// UniqueID names one connected device: the account and the device together,
// "account/device". It is the key of the routing tables (R9).
type UniqueID string

// ParseAccountID validates s as an account id.
func ParseAccountID(s string) (AccountID, error) {
	if err := checkID("account", s); err != nil {
		return "", err
	}
	return AccountID(s), nil
}

// ParseDeviceID validates s as a device id.
func ParseDeviceID(s string) (DeviceID, error) {
	if err := checkID("device", s); err != nil {
		return "", err
	}
	return DeviceID(s), nil
}

// ParseGroupID validates s as a group id.
func ParseGroupID(s string) (GroupID, error) {
	if err := checkID("group", s); err != nil {
		return "", err
	}
	return GroupID(s), nil
}

// NewUniqueID joins an account and a device.
func NewUniqueID(a AccountID, d DeviceID) UniqueID {
	return UniqueID(string(a) + "/" + string(d))
}

// Split returns the account and device of u.
func (u UniqueID) Split() (AccountID, DeviceID) {
	a, d, _ := strings.Cut(string(u), "/")
	return AccountID(a), DeviceID(d)
}

// checkID enforces the id charset and length shared by every identifier.
func checkID(what, s string) error {
	if s == "" {
		return &InvalidError{Field: what, Reason: "is empty"}
	}
	if len(s) > MaxIDLen {
		return &InvalidError{Field: what, Reason: fmt.Sprintf("is longer than %d bytes", MaxIDLen)}
	}
	for i := 0; i < len(s); i++ {
		if !idChar(s[i]) {
			return &InvalidError{Field: what, Reason: fmt.Sprintf("has a character outside [A-Za-z0-9._@-] at byte %d", i)}
		}
	}
	return nil
}

func idChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	case c == '.', c == '_', c == '-', c == '@':
		return true
	}
	return false
}
