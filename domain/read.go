package domain

// MaxReceiptMembers is the largest group whose members see each other's
// reads as they happen (a read receipt pushed to every member's devices,
// and the readers of a message by name). In a larger group a read is
// pushed only to the reader's own devices — a push per member per read
// would cost members² pushes when everyone reads — and the readers of a
// message are counted, not named.
const MaxReceiptMembers = 100
