package graph

import (
	"log/slog"
	"mime"
	"net/http"
	"time"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/input"
	"github.com/1588-pizza/pizza/web"
)

// DevTokenPath is where a development BFF signs tokens for the console's one-click sign-in.
const DevTokenPath = web.DevSignInPath

// DevToken is what DevTokens answers: a signed token, whom it is for, and when it expires.
type DevToken struct {
	Token     string     `json:"token"`
	Role      model.Role `json:"role"`
	ID        string     `json:"id"`
	ExpiresAt time.Time  `json:"expiresAt"`
}

// DevTokens signs a token for whoever asks: POST {"role": "CUSTOMER|AGENT|MASTER|ADMIN", "id": ...}
// with id the customer's id for CUSTOMER, the store's for MASTER, and any subject (or none) for
// AGENT and ADMIN, valid ttl. It is the development sign-in: serve it only in development, where
// the tokens' secret is no secret either. Only a JSON POST is taken (a cross-site form cannot
// send one without asking); errors are the services' {"error": {"code", "message", "field"}}.
func DevTokens(auth *Auth, ttl time.Duration, logger *slog.Logger) http.Handler {
	return httpapi.Handle(logger, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			refuse(w, http.StatusMethodNotAllowed, "use POST")
			return nil
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			refuse(w, http.StatusUnsupportedMediaType, "the body must be application/json")
			return nil
		}
		var in struct {
			Role string `json:"role"`
			ID   string `json:"id"`
		}
		if err := httpapi.ReadJSON(w, r, &in); err != nil {
			return err
		}
		role := model.Role(in.Role)
		if !role.IsValid() {
			return errs.Invalid("role", "must be CUSTOMER, AGENT, MASTER or ADMIN")
		}
		switch role {
		case model.RoleCustomer:
			if _, err := input.Key("id", in.ID); err != nil {
				return err
			}
		case model.RoleMaster:
			if _, err := input.ParseID(in.ID); err != nil {
				return errs.Invalid("id", "must be a store's id (a positive integer)")
			}
		default:
			if in.ID != "" {
				if _, err := input.Key("id", in.ID); err != nil {
					return err
				}
			}
		}
		token, expires, err := auth.mint(role, in.ID, ttl) // checks what was checked above: an error is a bug
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, DevToken{Token: token, Role: role, ID: in.ID, ExpiresAt: expires.UTC()})
		return nil
	})
}

// refuse answers a request the endpoint does not take, in the services' error shape.
func refuse(w http.ResponseWriter, status int, message string) {
	httpapi.WriteJSON(w, status, map[string]*errs.Error{"error": errs.Errorf(errs.BadUserInput, "%s", message)})
}
