package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/outbox"
)

// dlqAbout is what every dlq command does.
const dlqAbout = `
The services' dead letters: events a service could not apply, parked in its database. These
commands work on the services' databases and RabbitMQ directly, so no service need run: each
first parks what the service's dead-letter queue holds, then acts on the parked rows.`

// cmdDLQ lists, replays and discards the services' dead letters. It works on the services'
// databases and RabbitMQ directly, with the same outbox functions the services' internal API
// uses, so it needs no service running: each command first parks what the service's DLQ holds
// (a running service does so continuously), then acts on the parked rows.
func cmdDLQ(ctx context.Context, c cli, args []string) error {
	group := newFlagSet("dlq", "list|replay|discard [flags]", `
  pizza dlq list [--service S] [--limit N] [--json]
  pizza dlq replay --service S (ID ... | --all)
  pizza dlq discard --service S ID ...
`+dlqAbout+`

Run 'pizza dlq <command> -h' for a command's flags.`)
	if len(args) == 0 {
		return usagef(group, "give a command: list, replay or discard")
	}
	if strings.HasPrefix(args[0], "-") { // pizza dlq -h, or a flag before the command
		if _, err := parseArgs(group, args, c.stdout); err != nil {
			return err
		}
		return usagef(group, "give a command: list, replay or discard")
	}
	switch args[0] {
	case "list":
		return dlqListCmd(ctx, c, args[1:])
	case "replay", "discard":
		return dlqActCmd(ctx, c, args[0], args[1:])
	default:
		return usagef(group, "unknown command %q", args[0])
	}
}

func dlqListCmd(ctx context.Context, c cli, args []string) error {
	fs := newFlagSet("dlq list", "[--service S] [--limit N] [--json]",
		"List the services' dead letters (one service's with --service), oldest first.\n"+dlqAbout)
	service := fs.String("service", "", "only this service's: order, store, delivery or customercenter")
	limit := fs.Int("limit", httpapi.DefaultDeadLetterLimit, fmt.Sprintf("at most this many (1-%d)", httpapi.MaxDeadLetterLimit))
	asJSON := fs.Bool("json", false, "print JSON")
	rest, err := parseArgs(fs, args, c.stdout)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, "unexpected arguments %q", rest)
	}
	if *limit < 1 || *limit > httpapi.MaxDeadLetterLimit {
		return usagef(fs, "--limit must be from 1 to %d", httpapi.MaxDeadLetterLimit)
	}
	services := db.Services
	if *service != "" {
		s, err := db.ParseService(*service)
		if err != nil {
			return usagef(fs, "--service: %v", err)
		}
		services = []db.Service{s}
	}
	cfg, logger, err := c.config()
	if err != nil {
		return err
	}
	return dlqList(ctx, cfg, services, *limit, *asJSON, c.stdout, logger)
}

// dlqActCmd is dlq replay and dlq discard.
func dlqActCmd(ctx context.Context, c cli, verb string, args []string) error {
	synopsis, about := "--service S ID ...", "Discard dead letters of a service, by id (pizza dlq list shows them)."
	if verb == "replay" {
		synopsis = "--service S (ID ... | --all)"
		about = "Replay dead letters of a service, by id (pizza dlq list shows them), or all of them:\n" +
			"each is published again to the service's queue."
	}
	fs := newFlagSet("dlq "+verb, synopsis, about+"\n"+dlqAbout)
	service := fs.String("service", "", "the service: order, store, delivery or customercenter (required)")
	var all *bool
	if verb == "replay" {
		all = fs.Bool("all", false, "replay every dead letter of the service")
	}
	ids, err := parseArgs(fs, args, c.stdout)
	if err != nil {
		return err
	}
	if *service == "" {
		return usagef(fs, "--service is required")
	}
	s, err := db.ParseService(*service)
	if err != nil {
		return usagef(fs, "--service: %v", err)
	}
	switch {
	case all != nil && *all && len(ids) > 0:
		return usagef(fs, "give ids or --all, not both")
	case (all == nil || !*all) && len(ids) == 0:
		return usagef(fs, "give the ids of the dead letters (pizza dlq list shows them)")
	case len(ids) > outbox.MaxDeadLetterIDs:
		return usagef(fs, "at most %d ids at once", outbox.MaxDeadLetterIDs)
	}
	cfg, logger, err := c.config()
	if err != nil {
		return err
	}
	return withDeadLetters(ctx, cfg, s, logger, func(dl *outbox.DeadLetters) error {
		done := "discarded"
		var ok []int64
		if verb == "replay" {
			done = "replayed"
			if *all {
				ids = nil
			}
			ok, err = dl.Replay(ctx, ids)
		} else {
			ok, err = dl.Discard(ctx, ids)
		}
		if len(ok) > 0 || err == nil {
			fmt.Fprintf(c.stdout, "%s %d dead letter(s) of %s%s\n", done, len(ok), s, idList(ok))
		}
		if err != nil {
			return fmt.Errorf("dlq %s: %w", verb, dlqError(err))
		}
		return nil
	})
}

func idList(ids []int64) string {
	if len(ids) == 0 {
		return ""
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return ": " + strings.Join(s, ", ")
}

func dlqError(err error) error {
	var unknown *outbox.UnknownDeadLettersError
	if errors.As(err, &unknown) {
		return fmt.Errorf("%w; nothing was done", err)
	}
	return err
}

// withDeadLetters opens the service's database, parks what its DLQ holds now (a broker that cannot
// be reached is only a warning: the parked rows are still there), and runs f.
func withDeadLetters(ctx context.Context, cfg config, s db.Service, logger *slog.Logger, f func(*outbox.DeadLetters) error) error {
	pool, err := openPool(ctx, cfg.service(s).DatabaseURL, 2, false)
	if err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	defer pool.Close()
	dl := outbox.NewDeadLetters(pool, outbox.DeadLetterConfig{
		URL: cfg.Common.AMQPURL, Exchange: cfg.Common.Exchange, Queue: queueSpec(cfg, s), Service: string(s), Logger: logger,
	})
	if _, err := dl.Drain(ctx); err != nil {
		if !errors.Is(err, outbox.ErrBrokerUnavailable) {
			return fmt.Errorf("%s: %w (is its database migrated? run `pizza migrate`)", s, err)
		}
		logger.WarnContext(ctx, "cannot read the dead-letter queue; showing what is parked", "service", s, "err", err)
	}
	return f(dl)
}

func dlqList(ctx context.Context, cfg config, services []db.Service, limit int, asJSON bool, stdout io.Writer, logger *slog.Logger) error {
	var all []outbox.DeadLetter
	for _, s := range services {
		err := withDeadLetters(ctx, cfg, s, logger, func(dl *outbox.DeadLetters) error {
			list, err := dl.List(ctx, limit)
			all = append(all, list...)
			return err
		})
		if err != nil {
			return fmt.Errorf("dlq list: %w", err)
		}
	}
	slices.SortStableFunc(all, func(a, b outbox.DeadLetter) int { return a.DeadLetteredAt.Compare(b.DeadLetteredAt) })
	all = all[:min(limit, len(all))]
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if all == nil {
			all = []outbox.DeadLetter{}
		}
		return enc.Encode(all)
	}
	if len(all) == 0 {
		fmt.Fprintln(stdout, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tID\tDEAD-LETTERED\tREASON\tATTEMPTS\tTYPE\tORDER\tEVENT\tERROR")
	for _, d := range all {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", d.Service, d.ID, d.DeadLetteredAt.Local().Format("2006-01-02 15:04:05"),
			d.Reason, d.Attempts, dash(d.Type), dash(d.OrderID), dash(d.EventID), dash(oneLine(d.Error, 100)))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine is s on one line, cut to n characters.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
