package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Listener receives events for this process alone: a live fan-out. Each process gets its own
// exclusive, auto-deleted, server-named queue bound to the keys, so every replica sees every
// event; nothing is kept for a process that is not running, and nothing is acknowledged (a
// listener that misses messages while reconnecting is told through OnReconnect, to resync).
type Listener struct {
	cfg       ListenConfig
	connected atomic.Bool
}

// ListenConfig configures a Listener.
type ListenConfig struct {
	URL      string
	Exchange string // default "pizza.events"
	Keys     []string
	Name     string // shows in the broker's connection list
	// OnMessage gets each message's body, from one goroutine, in arrival order. It must not block.
	OnMessage func(body []byte)
	// OnReconnect runs after each connection but the first: messages may have been missed.
	OnReconnect func()
	Logger      *slog.Logger
}

// NewListener returns a listener; Run listens.
func NewListener(cfg ListenConfig) *Listener {
	if cfg.Exchange == "" {
		cfg.Exchange = defaultExchange
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OnReconnect == nil {
		cfg.OnReconnect = func() {}
	}
	return &Listener{cfg: cfg}
}

// Connected reports whether the listener's queue is consuming now.
func (l *Listener) Connected() bool { return l.connected.Load() }

// Run listens until ctx ends, reconnecting with backoff.
func (l *Listener) Run(ctx context.Context) error {
	b := backoff{min: 50 * time.Millisecond, max: 5 * time.Second}
	for first := true; ; first = false {
		conn, _, err := dialLoop(ctx, l.cfg.URL, l.cfg.Name, l.cfg.Logger)
		if err != nil {
			return nil
		}
		err = l.session(ctx, conn, first)
		l.connected.Store(false)
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil
		}
		wait := b.next()
		l.cfg.Logger.WarnContext(ctx, "listener lost its connection, reconnecting", "err", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

func (l *Listener) session(ctx context.Context, conn *amqp.Connection, first bool) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := declareExchange(ch, l.cfg.Exchange); err != nil {
		return err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("declare listener queue: %w", err)
	}
	for _, key := range l.cfg.Keys {
		if err := ch.QueueBind(q.Name, key, l.cfg.Exchange, false, nil); err != nil {
			return fmt.Errorf("bind listener queue to %s: %w", key, err)
		}
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return err
	}
	l.connected.Store(true)
	if !first {
		l.cfg.OnReconnect()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return fmt.Errorf("listener channel closed")
			}
			l.cfg.OnMessage(d.Body)
		}
	}
}
