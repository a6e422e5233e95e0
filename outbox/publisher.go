package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// errUnroutable means the broker confirmed a mandatory message but no queue was bound to its
// routing key, so it went nowhere: the publish did not happen.
var errUnroutable = errors.New("unroutable: no queue is bound to this routing key")

var errConnectionLost = errors.New("rabbitmq connection lost before the confirm")

// errPublisherClosed is returned by Publish after Close.
var errPublisherClosed = errors.New("publisher closed")

// Publisher publishes to one exchange with publisher confirms, many messages in flight on one
// channel (pipelined), mandatory with returns handled, and reconnects with backoff when the
// broker or the network drops the connection. Its methods are safe for concurrent use.
type Publisher struct {
	url      string
	exchange string
	name     string
	topology []QueueSpec
	logger   *slog.Logger
	inflight chan struct{} // a semaphore bounding unconfirmed messages
	// acquireMu lets one publishAll at a time take its slots
	acquireMu sync.Mutex

	mu      sync.Mutex
	cur     *pubChannel   // nil while disconnected
	changed chan struct{} // closed and replaced whenever cur changes

	cancel context.CancelFunc
	done   chan struct{}
}

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	URL      string
	Exchange string // default "pizza.events"
	// Name shows in the broker's connection list.
	Name string
	// MaxInFlight bounds messages awaiting their confirm (default 1024).
	MaxInFlight int
	// Topology is declared on every connection before anything is published: the queues of
	// every consuming service, so that an event is kept for a consumer that has never run yet
	// (mandatory only notices when no queue at all would get a message).
	Topology []QueueSpec
	Logger   *slog.Logger
}

// NewPublisher starts a publisher that connects in the background and keeps connecting.
// Close stops it.
func NewPublisher(cfg PublisherConfig) *Publisher {
	if cfg.Exchange == "" {
		cfg.Exchange = defaultExchange
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = "pizza-publisher"
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{
		url: cfg.URL, exchange: cfg.Exchange, name: cfg.Name, logger: cfg.Logger, topology: cfg.Topology,
		inflight: make(chan struct{}, cfg.MaxInFlight),
		changed:  make(chan struct{}),
		cancel:   cancel, done: make(chan struct{}),
	}
	go p.run(ctx)
	return p
}

// Close stops reconnecting and closes the connection; pending publishes fail.
func (p *Publisher) Close() {
	p.cancel()
	<-p.done
}

// Connected reports whether the publisher holds a live channel now.
func (p *Publisher) Connected() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur != nil
}

// Publish sends body with routing key key and message-id msgID, persistent and mandatory, and
// returns once the broker has confirmed it. A nack or a lost connection is retried (on the next
// connection) until ctx ends; errUnroutable is returned at once.
func (p *Publisher) Publish(ctx context.Context, key, msgID string, body []byte, headers amqp.Table) error {
	return p.publishAll(ctx, []message{{Key: key, MsgID: msgID, Body: body, Headers: headers}})[0]
}

// message is one message for publishAll.
type message struct {
	Key, MsgID string
	Body       []byte
	Headers    amqp.Table
}

// publishAll publishes msgs in their order on one channel, sending each without waiting for
// the confirms of those before it, and returns each one's outcome as Publish would: nil once
// confirmed, errUnroutable, or the error that ended ctx. Messages that are nacked or lose their
// connection are sent again (in their order, but after the others of their round) until ctx ends.
func (p *Publisher) publishAll(ctx context.Context, msgs []message) []error {
	errs := make([]error, len(msgs))
	todo := make([]int, 0, len(msgs))
	for i, m := range msgs {
		if m.MsgID == "" {
			errs[i] = errors.New("publish: a message-id is required (returns are matched by it)")
			continue
		}
		todo = append(todo, i)
	}
	b := backoff{min: 20 * time.Millisecond, max: time.Second}
	for len(todo) > 0 {
		pc, err := p.channel(ctx)
		if err != nil {
			for _, i := range todo {
				errs[i] = err
			}
			return errs
		}
		// A round takes its in-flight slots all at once, one round at a time: rounds holding some
		// slots while waiting for more would wait on each other.
		round := todo[:min(len(todo), cap(p.inflight))]
		if err := p.acquire(ctx, len(round)); err != nil {
			for _, i := range todo {
				errs[i] = err
			}
			return errs
		}
		sent := pc.sendAll(ctx, p.exchange, msgs, round, errs)
		for _, pp := range sent {
			if pp == nil {
				<-p.inflight
			}
		}
		var again []int
		for k, i := range round {
			if sent[k] != nil {
				errs[i] = sent[k].wait(ctx)
				<-p.inflight
			}
			if errs[i] != nil && !errors.Is(errs[i], errUnroutable) && ctx.Err() == nil {
				again = append(again, i)
			}
		}
		if todo = append(again, todo[len(round):]...); len(again) > 0 {
			p.logger.DebugContext(ctx, "publishes not confirmed, retrying", "count", len(todo), "err", errs[todo[0]])
			if !sleep(ctx, b.next()) {
				for _, i := range todo {
					errs[i] = errors.Join(ctx.Err(), errs[i])
				}
				return errs
			}
		}
	}
	return errs
}

// acquire takes n in-flight slots, holding acquireMu so that only one caller at a time waits
// while holding some.
func (p *Publisher) acquire(ctx context.Context, n int) error {
	p.acquireMu.Lock()
	defer p.acquireMu.Unlock()
	for k := range n {
		select {
		case p.inflight <- struct{}{}:
		case <-ctx.Done():
			for range k {
				<-p.inflight
			}
			return ctx.Err()
		}
	}
	return nil
}

// channel returns the live channel, waiting for a connection until ctx ends.
func (p *Publisher) channel(ctx context.Context) (*pubChannel, error) {
	for {
		p.mu.Lock()
		pc, changed := p.cur, p.changed
		p.mu.Unlock()
		if pc != nil {
			return pc, nil
		}
		select {
		case <-changed:
		case <-p.done:
			return nil, errPublisherClosed
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for rabbitmq: %w", ctx.Err())
		}
	}
}

func (p *Publisher) setCurrent(pc *pubChannel) {
	p.mu.Lock()
	p.cur = pc
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// run owns the connection: connect, serve until it closes, fail what was in flight, reconnect.
func (p *Publisher) run(ctx context.Context) {
	defer close(p.done)
	for ctx.Err() == nil {
		conn, sock, err := dialLoop(ctx, p.url, p.name, p.logger)
		if err != nil {
			return
		}
		pc, err := openPubChannel(conn, sock, p.exchange, p.topology)
		if err != nil {
			p.logger.WarnContext(ctx, "open publishing channel", "err", err)
			_ = conn.Close()
			sleep(ctx, 500*time.Millisecond)
			continue
		}
		p.setCurrent(pc)
		p.logger.InfoContext(ctx, "publisher connected", "connection", p.name)
		select {
		case <-pc.closed:
			p.logger.WarnContext(ctx, "publisher connection lost, reconnecting", "err", pc.closeErr)
		case <-ctx.Done():
		}
		p.setCurrent(nil)
		_ = conn.Close()
		<-pc.closed
	}
}

// pubChannel is one confirm-mode channel and the bookkeeping of what awaits its confirm.
type pubChannel struct {
	ch   *amqp.Channel
	sock *corkConn // the connection's socket, corked while a round is sent

	// pubLock serialises sequence-number reads with publishes; a channel so waiting honours ctx.
	pubLock chan struct{}
	// unblocked is closed while the broker lets this connection publish, and replaced by an open
	// channel while a resource alarm blocks it (connection.blocked).
	blockMu   sync.Mutex
	unblocked chan struct{}

	mu       sync.Mutex
	pending  map[uint64]*pendingPub
	byMsgID  map[string]*pendingPub
	closed   chan struct{}
	closeErr error
}

type pendingPub struct {
	msgID    string
	returned bool
	done     chan error // buffered(1), resolved exactly once
}

func openPubChannel(conn *amqp.Connection, sock *corkConn, exchange string, topology []QueueSpec) (*pubChannel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	for _, q := range topology {
		if err := declareQueue(ch, exchange, q); err != nil {
			return nil, err
		}
	}
	if err := declareExchange(ch, exchange); err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("enable publisher confirms: %w", err)
	}
	pc := &pubChannel{
		ch:        ch,
		sock:      sock,
		pubLock:   make(chan struct{}, 1),
		unblocked: closedChan(),
		pending:   make(map[uint64]*pendingPub),
		byMsgID:   make(map[string]*pendingPub),
		closed:    make(chan struct{}),
	}
	// Confirms are buffered beyond any in-flight bound so the library's reader never blocks on us.
	// Returns are unbuffered on purpose: the broker sends basic.return before the basic.ack of the
	// same message, and the reader hands us the return synchronously, so by the time its ack can
	// reach us the return has been recorded by the same goroutine that resolves confirms.
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1<<16))
	returns := ch.NotifyReturn(make(chan amqp.Return))
	closes := conn.NotifyClose(make(chan *amqp.Error, 1))
	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	go pc.watchBlocked(blocked)
	go pc.loop(confirms, returns, closes)
	return pc, nil
}

func (pc *pubChannel) loop(confirms <-chan amqp.Confirmation, returns <-chan amqp.Return, closes <-chan *amqp.Error) {
	var closeErr error = errConnectionLost
	for confirms != nil || returns != nil {
		select {
		case c, ok := <-confirms:
			if !ok {
				confirms = nil
				continue
			}
			pc.resolve(c)
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			pc.mu.Lock()
			if p := pc.byMsgID[r.MessageId]; p != nil {
				p.returned = true
			}
			pc.mu.Unlock()
		case e, ok := <-closes:
			if ok && e != nil {
				closeErr = fmt.Errorf("%w: %v", errConnectionLost, e)
			}
			closes = nil
		}
	}
	pc.mu.Lock()
	pc.closeErr = closeErr
	for seq, p := range pc.pending {
		p.done <- closeErr
		delete(pc.pending, seq)
	}
	clear(pc.byMsgID)
	close(pc.closed) // under mu, so no publish can register after the drain
	pc.mu.Unlock()
}

// watchBlocked tracks the broker's connection.blocked / unblocked notifications (memory or disk
// alarms). While blocked, a publish would hang inside the socket write; publishers wait instead,
// bounded by their context. The channel closes with the connection.
func (pc *pubChannel) watchBlocked(blocked <-chan amqp.Blocking) {
	for b := range blocked {
		pc.blockMu.Lock()
		if b.Active {
			select {
			case <-pc.unblocked:
				pc.unblocked = make(chan struct{})
			default:
			}
		} else {
			select {
			case <-pc.unblocked:
			default:
				close(pc.unblocked)
			}
		}
		pc.blockMu.Unlock()
	}
}

func (pc *pubChannel) waitUnblocked(ctx context.Context) error {
	pc.blockMu.Lock()
	ch := pc.unblocked
	pc.blockMu.Unlock()
	select {
	case <-ch:
		return nil
	case <-pc.closed:
		return pc.closeErr
	case <-ctx.Done():
		return fmt.Errorf("rabbitmq is blocking publishers (resource alarm): %w", ctx.Err())
	}
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func (pc *pubChannel) resolve(c amqp.Confirmation) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	p := pc.pending[c.DeliveryTag]
	if p == nil {
		return
	}
	delete(pc.pending, c.DeliveryTag)
	if pc.byMsgID[p.msgID] == p {
		delete(pc.byMsgID, p.msgID)
	}
	switch {
	case !c.Ack:
		p.done <- errors.New("broker nacked the message")
	case p.returned:
		p.done <- errUnroutable
	default:
		p.done <- nil
	}
}

// sendAll publishes msgs[i] for each i of round, in order, and returns what each one's confirm
// will resolve, without waiting for them; a message not sent has a nil entry and its error in
// errs[i]. The round is sent under one hold of pubLock with the socket corked: one write for the
// lot instead of one per message.
func (pc *pubChannel) sendAll(ctx context.Context, exchange string, msgs []message, round []int, errs []error) []*pendingPub {
	sent := make([]*pendingPub, len(round))
	fail := func(err error) []*pendingPub {
		for _, i := range round {
			errs[i] = err
		}
		return sent
	}
	if err := pc.waitUnblocked(ctx); err != nil {
		return fail(err)
	}
	select {
	case pc.pubLock <- struct{}{}:
	case <-pc.closed:
		return fail(pc.closeErr)
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	defer func() { <-pc.pubLock }()
	pc.sock.Cork()
	defer pc.sock.Uncork()
	now := time.Now()
	for k, i := range round {
		m := msgs[i]
		sent[k], errs[i] = pc.send(ctx, exchange, m.Key, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent,
			MessageId: m.MsgID, Timestamp: now, Headers: m.Headers, Body: m.Body,
		})
	}
	return sent
}

// send publishes msg and returns what its confirm will resolve, without waiting for it. The
// caller holds pubLock, so sequence numbers and publishes go together.
func (pc *pubChannel) send(ctx context.Context, exchange, key string, msg amqp.Publishing) (*pendingPub, error) {
	p := &pendingPub{msgID: msg.MessageId, done: make(chan error, 1)}
	seq := pc.ch.GetNextPublishSeqNo()
	pc.mu.Lock()
	select {
	case <-pc.closed:
		pc.mu.Unlock()
		return nil, pc.closeErr
	default:
	}
	pc.pending[seq] = p
	pc.byMsgID[p.msgID] = p
	pc.mu.Unlock()
	if err := pc.ch.PublishWithContext(ctx, exchange, key, true, false, msg); err != nil {
		pc.mu.Lock()
		if pc.pending[seq] == p {
			delete(pc.pending, seq)
			delete(pc.byMsgID, p.msgID)
		}
		pc.mu.Unlock()
		return nil, err
	}
	return p, nil
}

// wait returns the message's confirm: nil, errUnroutable, a nack or a lost connection.
func (p *pendingPub) wait(ctx context.Context) error {
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
