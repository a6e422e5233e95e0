package outbox

import (
	"context"
	"time"

	"github.com/riverqueue/river/riverdriver"
)

// wake tells the relays of this database, in this process or another, that a transaction which
// wrote events has committed: one NOTIFY outside any transaction, after the commit, so the
// relay fetches the events now instead of at its next poll. Calls while a NOTIFY is being sent
// are folded into one more after it; none is lost, and a failed NOTIFY leaves the events to the
// poll. It never blocks.
func (o *Outbox) wake() {
	if o.cfg.PollOnly {
		return
	}
	o.wakePending.Store(true)
	if o.waking.CompareAndSwap(false, true) {
		go o.wakeLoop()
	}
}

func (o *Outbox) wakeLoop() {
	for {
		for o.wakePending.Swap(false) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := o.notify.NotifyMany(ctx, &riverdriver.NotifyManyParams{
				Topic:   riverInsertTopic,
				Payload: []string{o.wakePayload},
			})
			cancel()
			if err != nil {
				o.cfg.Logger.Debug("relay wake-up failed; the poll will find the events", "err", err)
			}
		}
		o.waking.Store(false)
		// A wake between the last Swap and the Store saw waking set and started nobody.
		if !o.wakePending.Load() || !o.waking.CompareAndSwap(false, true) {
			return
		}
	}
}

// riverInsertTopic is the channel River's producers listen on for new jobs (River sends the same
// notification itself from inside an inserting transaction, which is what wake avoids).
const riverInsertTopic = "river_insert"
