// Package outbox is the one mechanism every service uses to announce events: an event is written
// inside the caller's pgx transaction, relayed to RabbitMQ with publisher confirms by a River
// worker, and applied by consumers exactly once through an inbox.
//
// The package has two halves. Writing events in a transaction and relaying them, one file per
// part, each with one entry point:
//
//   - outbox.go: Config, New, Start, Stop: a service's Outbox and its River client.
//   - write.go: Outbox.Write, the write path: the events become relay job rows.
//   - tx.go: Tx (Begin, InTx, Commit): a transaction whose event inserts, Deferred work and
//     ExecAtCommit statements are sent with its COMMIT.
//   - wake.go: Outbox.wake, the one NOTIFY after a commit that tells the relay to fetch.
//   - relay.go: relayWorker.Work, the River worker that publishes a job's events.
//   - prune.go: pruneWorker.Work, the periodic River job that forgets old inbox entries.
//   - direct.go: Outbox.dispatch, publishing a Tx's events right after its commit.
//
// And the RabbitMQ side, one file per part too:
//
//   - publisher.go: Publisher, publishing with confirms and reconnecting.
//   - broker.go: the exchange and queues, and dialling.
//   - consumer.go: Consumer.Run, taking deliveries from a service's queue.
//   - settle.go: each delivery applied in a transaction with the inbox, acked, retried or
//     dead-lettered (with acker.go, and unavailable.go for a database that is away).
//   - listener.go: Listener, a live fan-out with no database (the BFF's).
//   - deadletter.go: DeadLetters.Run, parking a DLQ in the database.
//   - replay.go: what an operator does with parked dead letters: list, replay, discard.
//
// event.go, trace.go, metrics.go and timeline.go are shared by both.
//
// # Writing
//
// Outbox.Write inserts the events of a transaction as River relay jobs with its own statement
// (insertJobs in write.go: INSERT INTO river_job ... FROM unnest(...), as River's
// JobInsertFastMany would, up to 256 events a job), not through River's client: the job row is
// their outbox row (args.events, in the order written, with args.orderIds for the order
// timeline; the outbox_events view shows one row per event). It commits or rolls back with the
// business change. In a Tx (every consumer transaction, order placements, InTx) Write inserts
// nothing at once: the events of the whole transaction are inserted in one statement sent in the
// COMMIT's round trip, so one job carries every event a batch of handlers wrote. In any other
// transaction the insert runs at once.
//
// The relay is woken after the commit: Outbox.wake sends one NOTIFY on River's insert channel, on
// its own, outside any transaction, and River fetches within FetchCooldown; FetchPollInterval is
// the fallback. The write itself never notifies (River's client would, from inside the inserting
// transaction, which is why Write does not insert through it): a NOTIFY inside a transaction takes
// a server-wide lock at commit, so under load every notifying transaction of every database
// waited for the others' WAL flushes ("Lock:object" on commit in pg_stat_activity;
// BENCHMARKS.md). With Config.PollOnly nothing notifies and the relay polls. With
// Config.DirectPublish a Tx's events are published right after its commit by the committing
// process (direct.go) and their jobs, written due DirectGrace later, are marked done; the relay
// publishes only what that did not.
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
// The relay worker publishes each event of its job (its JSON, unchanged) to the topic exchange
// with routing key = event type, persistent, message-id = eventId, mandatory, in the order they
// were written. One Publisher keeps a confirm-mode channel with many messages in flight
// (publishAll sends a job's events and then waits for their confirms) and reconnects with backoff
// when the connection drops; what was in flight fails and is published again on the next
// connection. A job completes only after every confirm, so a relay that dies after a confirm
// re-sends the job's events (at least once); consumers make that harmless. A message the broker
// returns as unroutable is retried until a queue is bound for it, except for keys
// Config.Optional names (live fan-outs nobody may be listening to).
//
// # Consuming
//
// A Consumer owns one durable queue (classic or quorum) bound to the keys a service needs, with
// a dead-letter queue <queue>.dlq. Deliveries are applied in batches: what is waiting when a
// worker is free (up to BatchSize) goes into one transaction, which first records every eventId
// in outbox_inbox with one statement, sent with the BEGIN together with the first statements of
// the service's BatchPreparer (its one entry point; EachEvent adapts a per-event Handler), then
// hands the fresh events (not already there: a duplicate is skipped) to the handler it returned,
// all at once, then does what the handlers deferred (Deferred, ExecAtCommit; the events they wrote),
// commits, publishes or wakes the relay, and acks. Batches grow with the
// backlog and never wait to fill. A batch that fails is applied again delivery by delivery. A
// failing handler is retried with doubling backoff MaxAttempts times, then the message is
// published to the DLQ with its reason, error and attempt count in headers and acked; a message
// that does not parse goes there at once. If that publish cannot be
// confirmed, the delivery is rejected (Reject, requeue=false), and the queue's own dead-letter
// arguments put it in the same DLQ. On quorum queues a delivery limit also dead-letters a message
// that kills its consumer before any ack.
//
// Only a handler that fails on a healthy database counts toward MaxAttempts. A transaction that
// fails because the database is away (db.Unavailable: refused, reset or broken connections,
// SQLSTATE class 08, 57P01-57P03, 53300, timeouts, and ErrCommitUnknown, whose retry the inbox
// makes safe) or that loses a deadlock or serialization conflict (db.Conflict) is tried again,
// whole, for as long as that lasts, with backoff doubling up to MaxRetryBackoff: its deliveries
// stay unacked and are never dead-lettered, the other prefetched ones wait behind them, and
// Consumer.Err reports the outage (a service's /readyz with it) until a transaction commits
// again, which wakes every waiting delivery. A consumer stopped meanwhile ends its waits (and
// attempts in flight) at once and leaves the deliveries to the broker.
//
// # Dead letters
//
// DeadLetters moves a service's DLQ into its database (outbox_dead_letters) as messages arrive,
// since a queue cannot be listed without consuming it: insert, then ack, one row per eventId.
// Operators list them, replay them (published with confirms to the service's own queue through
// the default exchange, then deleted; the inbox absorbs a replay of what was applied) or discard
// them.
package outbox
