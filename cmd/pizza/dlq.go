package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/outbox"
)

const dlqUsage = `usage:
  pizza dlq list [--service S] [--limit N] [--json]
  pizza dlq replay --service S (ID ... | --all)
  pizza dlq discard --service S ID ...`

// dlq lists, replays and discards the services' dead letters. It works on the services'
// databases and RabbitMQ directly, with the same outbox functions the services' internal API
// uses, so it needs no service running: each command first parks what the service's DLQ holds
// (a running service does so continuously), then acts on the parked rows.
func dlq(ctx context.Context, cfg config, args []string, stdout io.Writer, logger *slog.Logger) error {
	if len(args) == 0 {
		return errors.New("dlq: give a command\n" + dlqUsage)
	}
	fs := flag.NewFlagSet("dlq "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	service := fs.String("service", "", "the service: order, store, delivery or customercenter")
	switch args[0] {
	case "list":
		limit := fs.Int("limit", defaultDeadLetterLimit, "at most this many (1-500)")
		asJSON := fs.Bool("json", false, "print JSON")
		rest, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return err
		}
		if len(rest) > 0 {
			return fmt.Errorf("dlq list: unexpected arguments %q\n%s", rest, dlqUsage)
		}
		if *limit < 1 || *limit > maxDeadLetterLimit {
			return fmt.Errorf("dlq list: --limit must be from 1 to %d", maxDeadLetterLimit)
		}
		services := db.Services
		if *service != "" {
			s, err := db.ParseService(*service)
			if err != nil {
				return fmt.Errorf("dlq list: --service: %w", err)
			}
			services = []db.Service{s}
		}
		return dlqList(ctx, cfg, services, *limit, *asJSON, stdout, logger)
	case "replay", "discard":
		var all *bool
		if args[0] == "replay" {
			all = fs.Bool("all", false, "replay every dead letter of the service")
		}
		ids, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return err
		}
		if *service == "" {
			return fmt.Errorf("dlq %s: --service is required\n%s", args[0], dlqUsage)
		}
		s, err := db.ParseService(*service)
		if err != nil {
			return fmt.Errorf("dlq %s: --service: %w", args[0], err)
		}
		switch {
		case all != nil && *all && len(ids) > 0:
			return errors.New("dlq replay: give ids or --all, not both")
		case (all == nil || !*all) && len(ids) == 0:
			return fmt.Errorf("dlq %s: give the ids of the dead letters (pizza dlq list shows them)\n%s", args[0], dlqUsage)
		case len(ids) > outbox.MaxDeadLetterIDs:
			return fmt.Errorf("dlq %s: at most %d ids at once", args[0], outbox.MaxDeadLetterIDs)
		}
		return withDeadLetters(ctx, cfg, s, logger, func(dl *outbox.DeadLetters) error {
			verb := "discarded"
			var done []int64
			if args[0] == "replay" {
				verb = "replayed"
				if *all {
					ids = nil
				}
				done, err = dl.Replay(ctx, ids)
			} else {
				done, err = dl.Discard(ctx, ids)
			}
			if len(done) > 0 || err == nil {
				fmt.Fprintf(stdout, "%s %d dead letter(s) of %s%s\n", verb, len(done), s, idList(done))
			}
			if err != nil {
				return fmt.Errorf("dlq %s: %w", args[0], dlqError(err))
			}
			return nil
		})
	default:
		return fmt.Errorf("dlq: unknown command %q\n%s", args[0], dlqUsage)
	}
}

// parseInterleaved parses flags wherever they stand among the positional arguments, which it returns.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", fs.Name(), err, dlqUsage)
		}
		if fs.NArg() == 0 {
			return rest, nil
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
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
