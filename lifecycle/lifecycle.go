// Package lifecycle is the published language of an order's life, shared by every service and
// the BFF: the event catalog (routing keys and payloads), the statuses, and the lattice that folds
// events into a view so that every order of arrival, with any duplicates, gives the same result.
package lifecycle

import (
	"fmt"
	"time"

	"github.com/1588-pizza/pizza/input"
	"github.com/1588-pizza/pizza/outbox"
)

// Status is where an order is in its life.
type Status string

// The statuses. Progress is ORDERED < RECEIVED < COOKED < DELIVERY_STARTED; REJECTED and
// CANCELLED are terminal and win over any progress.
const (
	Ordered         Status = "ORDERED"
	Received        Status = "RECEIVED"
	Cooked          Status = "COOKED"
	DeliveryStarted Status = "DELIVERY_STARTED"
	Rejected        Status = "REJECTED"
	Cancelled       Status = "CANCELLED"
)

// rank orders statuses in the lattice: a join keeps the higher rank. Cancelled outranks Rejected
// so that an order both rejected by its store and cancelled by its customer ends the same way in
// every view: CANCELLED, the customer's own word. (The store now refuses to cancel an order it
// rejected, but events of an earlier version may say both.)
func (s Status) rank() int {
	switch s {
	case Ordered:
		return 1
	case Received:
		return 2
	case Cooked:
		return 3
	case DeliveryStarted:
		return 4
	case Rejected:
		return 10
	case Cancelled:
		return 11
	default:
		return 0
	}
}

// Valid reports whether s is one of the statuses.
func (s Status) Valid() bool { return s.rank() > 0 }

// Terminal reports whether nothing can move s any further but a cancellation.
func (s Status) Terminal() bool { return s == Rejected || s == Cancelled }

// AtLeast reports whether s has progressed to other or beyond (terminal statuses count as beyond).
func (s Status) AtLeast(other Status) bool { return s.rank() >= other.rank() }

// Join is the lattice's least upper bound: commutative, associative and idempotent, so folding
// any permutation of any multiset of events gives one answer.
func Join(a, b Status) Status {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// RejectReason says why an order was REJECTED.
type RejectReason string

// The reject reasons.
const (
	NoOpenStore RejectReason = "NO_OPEN_STORE"
	StoreBusy   RejectReason = "STORE_BUSY"
)

// The event catalog: routing keys (docs/architecture.md, "Events", lists who produces and consumes each).
const (
	OrderPlaced          = "order.placed"
	OrderRejected        = "order.rejected"
	OrderCancelled       = "order.cancelled"
	StoreOrderReceived   = "store.order_received"
	StoreOrderRejected   = "store.order_rejected"
	StoreOrderCooked     = "store.order_cooked"
	StoreOrderCancelled  = "store.order_cancelled"
	DeliveryStartedEvent = "delivery.started"
	DeliveryCancelled    = "delivery.cancelled"
	MyPageUpdated        = "customercenter.mypage_updated"
)

// CheckEvent refuses an event that no service of this system can apply: every event is about
// one order, named by the id the order service gave it (a positive integer). Consumers dead-letter
// such an event as malformed before any handler sees it (outbox.ConsumerConfig.Check), so that
// no service makes a row for an order that cannot exist.
func CheckEvent(ev outbox.Event) error {
	if _, err := input.ParseID(ev.OrderID); err != nil {
		return fmt.Errorf("orderId: %w", err)
	}
	return nil
}

// StatusOf is the status an event of type typ implies, and whether typ is a lifecycle event.
func StatusOf(typ string) (Status, bool) {
	switch typ {
	case OrderPlaced:
		return Ordered, true
	case StoreOrderReceived:
		return Received, true
	case StoreOrderCooked:
		return Cooked, true
	case DeliveryStartedEvent:
		return DeliveryStarted, true
	case OrderRejected, StoreOrderRejected:
		return Rejected, true
	case OrderCancelled, StoreOrderCancelled, DeliveryCancelled:
		return Cancelled, true
	}
	return "", false
}

// OrderDetails is what an order is: carried by order.placed and order.rejected.
type OrderDetails struct {
	CustomerID string    `json:"customerId"`
	Pizza      string    `json:"pizza"`
	Qty        int       `json:"qty"`
	Region     string    `json:"region"`
	PlacedAt   time.Time `json:"placedAt"`
}

// Payload is the union of the lifecycle events' payload fields; each event fills the ones it
// knows. Unknown fields are ignored, so producers may add more.
type Payload struct {
	OrderDetails
	RejectReason      RejectReason `json:"rejectReason,omitempty"`
	RetryAfterSeconds int          `json:"retryAfterSeconds,omitempty"`
	StoreID           string       `json:"storeId,omitempty"`
	DeliveryID        string       `json:"deliveryId,omitempty"`
}

// View is an order as the events tell it: what customercenter keeps per order, and the part of
// every other service's row that events drive.
type View struct {
	OrderID      string       `json:"orderId"`
	CustomerID   string       `json:"customerId"`
	Pizza        string       `json:"pizza"`
	Qty          int          `json:"qty"`
	Region       string       `json:"region"`
	Status       Status       `json:"status"`
	RejectReason RejectReason `json:"rejectReason,omitempty"`
	StoreID      string       `json:"storeId,omitempty"`
	DeliveryID   string       `json:"deliveryId,omitempty"`
	PlacedAt     time.Time    `json:"placedAt"`
}

// Apply folds one event into v. Every field is a join: the status by the lattice, the others
// set by the first event that knows them and never cleared, so Apply is commutative and
// idempotent over a lifecycle's events. It reports whether v changed; a non-lifecycle event or
// an event for another order is an error.
func (v View) Apply(ev outbox.Event) (View, bool, error) {
	st, ok := StatusOf(ev.Type)
	if !ok {
		return v, false, fmt.Errorf("%s is not an order lifecycle event", ev.Type)
	}
	if v.OrderID != "" && v.OrderID != ev.OrderID {
		return v, false, fmt.Errorf("event for order %s applied to order %s", ev.OrderID, v.OrderID)
	}
	var p Payload
	if err := ev.DecodePayload(&p); err != nil {
		return v, false, err
	}
	before := v
	v.OrderID = ev.OrderID
	v.CustomerID = first(v.CustomerID, p.CustomerID)
	v.Pizza = first(v.Pizza, p.Pizza)
	v.Region = first(v.Region, p.Region)
	if v.Qty == 0 {
		v.Qty = p.Qty
	}
	if v.PlacedAt.IsZero() {
		v.PlacedAt = p.PlacedAt
	}
	v.StoreID = first(v.StoreID, p.StoreID)
	v.DeliveryID = first(v.DeliveryID, p.DeliveryID)
	v.Status = Join(v.Status, st)
	if st == Rejected {
		v.RejectReason = joinReason(v.RejectReason, p.RejectReason)
	}
	return v, v != before, nil
}

// ShownRejectReason is the reason to show: only a REJECTED order has one.
func (v View) ShownRejectReason() RejectReason { return ShownReason(v.Status, v.RejectReason) }

// ShownReason is the one rule for showing a reject reason: an order shows the reason it was
// refused for only while it is REJECTED (a rejected order cancelled later shows none).
func ShownReason(st Status, reason RejectReason) RejectReason {
	if st != Rejected {
		return ""
	}
	return reason
}

func first(have, next string) string {
	if have != "" {
		return have
	}
	return next
}

// joinReason picks one reason deterministically when two rejections disagree.
func joinReason(a, b RejectReason) RejectReason {
	if a == "" || (b != "" && b < a) {
		return b
	}
	return a
}
