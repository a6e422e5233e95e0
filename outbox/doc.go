// Package outbox is the one mechanism every service uses to announce events: an event is written
// inside the caller's pgx transaction, relayed to RabbitMQ with publisher confirms by a River
// worker, and applied by consumers exactly once through an inbox.
//
// # Writing
//
// Outbox.Write inserts one River job per event with InsertTx, in the caller's transaction: the job
// row is the outbox row. It commits or rolls back with the business change. Two ways wake the
// relay: River's insert notification, sent by the same commit (the relay fetches within
// FetchCooldown), or, with Config.PollOnly, no notification at all and a relay polling every
// FetchPollInterval (5ms in `pizza serve`). pizza bench chose polling: a NOTIFY takes a
// server-wide lock at commit, so under load every notifying transaction of every database waited
// for the others' WAL flushes ("Lock:object" on commit in pg_stat_activity); polling removed
// those waits and halved freshness at 100 orders/s (BENCHMARKS.md).
//
// Why the job is the row, rather than an outbox table relayed by a River job: measured with
// BenchmarkWrite (16 writers, one business row per transaction, 2-core machine; BENCHMARKS.md),
// the event costs the same in either design, about 0.65-0.7ms per transaction against 0.35ms for
// the transaction with no event, and a plain table plus pg_notify costs no less (NOTIFY serialises
// commits). With write costs equal, the job-as-row design wins on what it removes: no second table
// to drain and delete from, and River already gives the relay what it needs, for free and tested:
// leader election among relays, rescue of jobs whose relay died mid-publish (RescueAfter), retry
// with our backoff, retention of sent events for inspection, and no cursor at all, since River
// fetches with SELECT ... FOR UPDATE SKIP LOCKED over the job states, never "id > last", so
// sequence values that commit out of order are never skipped.
//
// # Relaying
//
// The relay worker publishes the job's encoded arguments (the event's JSON, unchanged) to the
// topic exchange with routing key = event type, persistent, message-id = eventId, mandatory. One
// Publisher keeps a confirm-mode channel with many messages in flight (pipelined: each worker
// waits only for its own confirm) and reconnects with backoff when the connection drops; what was
// in flight fails and is published again on the next connection. A job completes only after its
// confirm, so a relay that dies after the confirm re-sends the event (at least once); consumers
// make that harmless. A message the broker returns as unroutable is retried until a queue is
// bound for it, except for keys Config.Optional names (live fan-outs nobody may be listening to).
//
// # Consuming
//
// A Consumer owns one durable queue (classic or quorum) bound to the keys a service needs, with
// a dead-letter queue <queue>.dlq. Each delivery runs in one transaction that first inserts its
// eventId into outbox_inbox (already there: a duplicate, skipped), then the handler; only after the
// commit is the delivery acked. A failing handler is retried with doubling backoff MaxAttempts
// times, then the message is published to the DLQ with its reason, error and attempt count in
// headers and acked; a message that does not parse goes there at once. If that publish cannot be
// confirmed, the delivery is rejected (Reject, requeue=false), and the queue's own dead-letter
// arguments put it in the same DLQ. On quorum queues a delivery limit also dead-letters a message
// that kills its consumer before any ack.
package outbox
