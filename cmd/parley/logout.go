package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/kafka"
)

func logoutCmd(args []string, stdout, _ io.Writer) error {
	f := newFlags("logout", stdout)
	brokers := f.string("kafka-brokers", "127.0.0.1:9092", "comma-separated Kafka brokers (the embedded broker by default)")
	kafkaSec := defineKafkaSecurity(f)
	account := f.string("account", "", "account to log out (required)")
	device := f.string("device", "", "only this device; empty logs out every device")
	reason := f.string("reason", "logged out", "reason, for logs")
	if err := f.parse(args); err != nil {
		return err
	}
	addrs, err := brokerList(*brokers)
	f.checkErr("kafka-brokers", err)
	kafkaSec.check(f)
	_, err = domain.ParseAccountID(*account)
	f.checkErr("account", err)
	if *device != "" {
		_, err := domain.ParseDeviceID(*device)
		f.checkErr("device", err)
	}
	if err := f.err(); err != nil {
		return err
	}
	l, err := kafka.Open(kafka.Config{Brokers: addrs, UsersOnly: true, Security: kafkaSec.security()})
	if err != nil {
		return err
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := events.UserLoggedOut{Account: *account, Device: *device, Reason: *reason, At: time.Now().UnixMilli()}
	pos, err := l.AppendUser(ctx, uuid.NewString(), e)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "published %s for %s at partition %d offset %d\n", e.EventName(), *account, pos.Partition, pos.Offset)
	return nil
}
