package events

// Topic defaults. The partition count is fixed when the topic is created.
const (
	// DefaultConversationTopic carries MessageSent and the group events, keyed
	// by conversation id.
	DefaultConversationTopic = "parley.conversations.v1"
	// DefaultPartitions suits one small machine: enough parallel partitions
	// for the projections to use every core.
	DefaultPartitions = 16
)
