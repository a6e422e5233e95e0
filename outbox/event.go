package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Event is one fact a service announces: the JSON body of one AMQP message. Its Type is the
// routing key and its ID the AMQP message-id, which consumers deduplicate on.
type Event struct {
	ID         uuid.UUID       `json:"eventId"`
	Type       string          `json:"type"`
	OrderID    string          `json:"orderId"`
	OccurredAt time.Time       `json:"occurredAt"`
	Producer   string          `json:"producer"`
	Payload    json.RawMessage `json:"payload"`
	// TraceParent is the W3C trace context of whatever caused the event (see trace.go).
	TraceParent string `json:"traceparent,omitempty"`
}

// NewEvent builds an event with a fresh time-ordered ID, stamped now, with payload encoded as JSON.
func NewEvent(typ, orderID, producer string, payload any) (Event, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Event{}, err
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s payload: %w", typ, err)
	}
	return Event{ID: id, Type: typ, OrderID: orderID, OccurredAt: time.Now().UTC(), Producer: producer, Payload: body}, nil
}

// Validate reports what makes the event unfit to publish or to apply, or nil.
func (e Event) Validate() error {
	var errs []error
	if e.ID == uuid.Nil {
		errs = append(errs, errors.New("eventId is missing"))
	}
	if e.Type == "" {
		errs = append(errs, errors.New("type is missing"))
	}
	if e.OrderID == "" {
		errs = append(errs, errors.New("orderId is missing"))
	}
	if e.OccurredAt.IsZero() {
		errs = append(errs, errors.New("occurredAt is missing"))
	}
	if e.Producer == "" {
		errs = append(errs, errors.New("producer is missing"))
	}
	return errors.Join(errs...)
}

// parseEvent decodes and validates a message body.
func parseEvent(body []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(body, &e); err != nil {
		return Event{}, fmt.Errorf("not an event: %w", err)
	}
	if err := e.Validate(); err != nil {
		return Event{}, fmt.Errorf("invalid event: %w", err)
	}
	return e, nil
}

// DecodePayload decodes the event's payload into v; an absent payload leaves v as it is. It is
// the one place an event's payload is read: the error names the event's type.
func (e Event) DecodePayload(v any) error {
	if len(e.Payload) == 0 || string(e.Payload) == "null" {
		return nil
	}
	if err := json.Unmarshal(e.Payload, v); err != nil {
		return fmt.Errorf("%s payload: %w", e.Type, err)
	}
	return nil
}
