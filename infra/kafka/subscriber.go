package kafka

import (
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
)

// uuidHeader is the record header that carries the Watermill message UUID,
// the same one watermill-kafka's own marshaler writes and reads.
const uuidHeader = wkafka.UUIDHeaderKey

// SubscriberConfig says how one consumer reads the log.
type SubscriberConfig struct {
	// Group is the consumer group. Empty reads every partition from the
	// oldest record without committing offsets: what an in-memory read model
	// rebuilt at every start needs.
	Group string
	// FromNewest starts a group that has no committed offset at the end of
	// the log instead of its beginning.
	FromNewest bool
}

// NewSubscriber returns a Watermill subscriber on l's brokers. Partition and
// offset of each message are in its context
// (wkafka.MessagePartitionFromCtx, wkafka.MessagePartitionOffsetFromCtx).
func (l *Log) NewSubscriber(sc SubscriberConfig, logger watermill.LoggerAdapter) (*wkafka.Subscriber, error) {
	cfg := wkafka.DefaultSaramaSubscriberConfig()
	l.cfg.applyDial(cfg)
	if err := l.cfg.Security.Apply(cfg); err != nil {
		return nil, err
	}
	cfg.ClientID = l.cfg.ClientID
	cfg.Version = sarama.V2_8_0_0
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	if sc.FromNewest {
		cfg.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	cfg.Consumer.Offsets.AutoCommit.Interval = 200 * time.Millisecond
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	return wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers:               l.cfg.Brokers,
		Unmarshaler:           wkafka.DefaultMarshaler{},
		OverwriteSaramaConfig: cfg,
		ConsumerGroup:         sc.Group,
		NackResendSleep:       100 * time.Millisecond,
		ReconnectRetrySleep:   time.Second,
	}, logger)
}
