package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/webhooks"
)

// webhooksCmd is `flashsale webhooks replay --since T`: every event written
// since T is delivered again, for a shop that lost its own data.
func webhooksCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "replay" {
		fmt.Fprintln(stderr, "usage: flashsale webhooks replay --since T [--mysql-dsn DSN]")
		if len(args) == 0 {
			return errors.New("webhooks: a subcommand is required (replay)")
		}
		return fmt.Errorf("webhooks: unknown subcommand %q (replay)", args[0])
	}
	var cfg node.Config
	fs := newFlagSet("webhooks replay --since T [flags]", &cfg)
	sinceFlag := fs.String("since", "", "deliver again every event written since this time: RFC 3339 (2026-12-03T18:00:00Z) or a duration back from now (90m)")
	if err := parseFlags(&cfg, fs, args[1:], stdout, stderr); err != nil {
		return err
	}
	since, err := parseSince(*sinceFlag, time.Now())
	if err != nil {
		return err
	}
	db, err := sql.Open("mysql", cfg.MySQLDSN)
	if err != nil {
		return fmt.Errorf("--mysql-dsn: %w", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := webhooks.Replay(ctx, db, since)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	fmt.Fprintf(stdout, "%d events written since %s are due again; the nodes with --webhook-url deliver them (events are kept 7 days)\n",
		n, since.UTC().Format(time.RFC3339))
	return nil
}

// parseSince reads --since: an RFC 3339 time, or a duration back from now.
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, errors.New("--since is required: an RFC 3339 time (2026-12-03T18:00:00Z) or a duration back from now (90m)")
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: give an RFC 3339 time (2026-12-03T18:00:00Z) or a positive duration (90m)", v)
}
