package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/1588-pizza/pizza/graph"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/services/store"
)

// started is what a component reports once it serves: its readiness check, and what the
// summary shows of it.
type started struct {
	name   string
	ready  func(context.Context) error
	url    string        // the BFF's public base URL
	opsURL string        // the BFF's ops base URL ("" when PIZZA_OPS_ADDR is empty)
	stores []store.Store // the development stores the store service registered, if it did
}

// announce waits until the n components of the process have started and are all ready, then says
// so: a log line, and in development a summary on stdout, the last thing on screen (see
// writeSummary). It returns early when ctx ends.
func announce(ctx context.Context, cfg config, n int, ups <-chan started, auth *graph.Auth, stdout io.Writer, logger *slog.Logger) {
	var all []started
	for len(all) < n {
		select {
		case <-ctx.Done():
			return
		case s := <-ups:
			all = append(all, s)
		}
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !allReady(ctx, all) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	names := make([]string, len(all))
	for i, s := range all {
		names[i] = s.name
	}
	logger.InfoContext(ctx, "ready", "components", strings.Join(names, ","))
	if !cfg.production() {
		writeSummary(stdout, all, auth)
	}
}

func allReady(ctx context.Context, all []started) bool {
	for _, s := range all {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := s.ready(ctx)
		cancel()
		if err != nil {
			return false
		}
	}
	return true
}

// tokenTTL is how long the tokens pizza mints are valid unless told otherwise: the summary's, pizza
// token's default and the development sign-in's (/dev/token).
const tokenTTL = 24 * time.Hour

// writeSummary writes what a developer needs once the process is ready: where the BFF is, the
// stores registered for a first run, one token per role, and how to stop.
func writeSummary(w io.Writer, all []started, auth *graph.Auth) {
	var bff *started
	var seeded []store.Store
	for i, s := range all {
		if s.name == "bff" {
			bff = &all[i]
		}
		seeded = append(seeded, s.stores...)
	}
	if bff == nil && len(seeded) == 0 {
		return
	}
	fmt.Fprintln(w)
	if bff != nil {
		fmt.Fprintln(w, "1588-pizza is ready (development).")
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  Console\t%s\t(sign in with a token below, or as any role in one click)\n", bff.url)
		fmt.Fprintf(tw, "  GraphiQL\t%splayground\n", bff.url)
		fmt.Fprintf(tw, "  GraphQL\t%sgraphql\t(POST, GET, websocket graphql-transport-ws)\n", bff.url)
		if bff.opsURL != "" {
			fmt.Fprintf(tw, "  Metrics\t%smetrics\n", bff.opsURL)
		}
		_ = tw.Flush()
		fmt.Fprintln(w)
	}
	master := "1"
	if len(seeded) > 0 {
		fmt.Fprintln(w, "Registered two stores to order from (the store database had none):")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, st := range seeded {
			state := "open"
			if !st.Open {
				state = "closed: orders in " + st.Region + " are REJECTED until its master opens it"
			} else if master == "1" {
				master = st.ID
			}
			fmt.Fprintf(tw, "  store %s\t%s\t%s\t%s\n", st.ID, st.Name, st.Region, state)
		}
		_ = tw.Flush()
		fmt.Fprintln(w)
	}
	if bff != nil && auth != nil {
		fmt.Fprintf(w, "Tokens, valid %dh: paste one in the console's sign-in, or in GraphiQL's Headers as {\"Authorization\": \"Bearer <token>\"}\n", int(tokenTTL.Hours()))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, r := range []struct {
			label string
			role  model.Role
			id    string
		}{
			{"customer 1", model.RoleCustomer, "1"},
			{"agent", model.RoleAgent, ""},
			{"master of store " + master, model.RoleMaster, master},
			{"admin", model.RoleAdmin, ""},
		} {
			tok, err := auth.Mint(r.role, r.id, tokenTTL)
			if err != nil {
				tok = "(" + err.Error() + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\n", r.label, tok)
		}
		_ = tw.Flush()
		fmt.Fprintln(w, "  (more: pizza token -h)")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Stop with Ctrl-C.")
	}
}

// browseURL is the base URL (ending in "/") a person on this machine opens for a server
// configured to listen on addr, bound at bound (nil: addr as configured; a bound port stands in
// for a configured port 0). Every interface (":8080", "0.0.0.0:8080", "[::]:8080") is reached at
// localhost; a host of its own (127.0.0.1, [::1], localhost, a name) is kept.
func browseURL(addr string, bound net.Addr) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + "/"
	}
	if bound != nil {
		if _, p, err := net.SplitHostPort(bound.String()); err == nil && (port == "0" || port == "") {
			port = p
		}
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}
