// Command flashsale runs the flash-sale waiting room: serve (any mix of
// roles), migrate, token (a dev user token), keys (the ticket keys), version.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flashsale/flashsale/identity"
	"github.com/flashsale/flashsale/migrations"
	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/sale"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `flashsale: a self-hosted virtual waiting room with a flash-sale checkout.

Usage:
  flashsale serve [flags]      run the server (flashsale serve -h lists every flag)
  flashsale migrate [flags]    create the database if missing and apply the schema
  flashsale token --user U     print a dev user token (reads --data-dir, or --identity-secret)
  flashsale reconcile --sale S [--repair]
                               compare a sale's live state in Redis with MySQL (exit 1 on
                               differences); --repair makes Redis agree with MySQL
  flashsale keys generate|rotate|add|list --ticket-key FILE
                               make or rotate the ticket signing keys (flashsale keys -h)
  flashsale webhooks replay --since T
                               deliver again every webhook event written since T
  flashsale version            print the version
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errDifferences) { // reconcile printed them
			fmt.Fprintln(os.Stderr, "flashsale:", err)
		}
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("a command is required")
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stdout, stderr)
	case "migrate":
		err = migrate(args[1:], stdout, stderr)
	case "token":
		err = token(args[1:], stdout, stderr)
	case "reconcile":
		err = reconcile(args[1:], stdout, stderr)
	case "keys":
		err = keys(args[1:], stdout, stderr)
	case "webhooks":
		err = webhooksCmd(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "flashsale", version)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	if errors.Is(err, errHelp) { // the usage went to stdout
		return nil
	}
	return err
}

// errHelp is a command's answer to -h or --help: it printed its usage.
var errHelp = errors.New("help printed")

// newFlagSet is a command's flag set with the settings of node.Config; the
// command may add flags of its own before parseFlags.
func newFlagSet(synopsis string, cfg *node.Config) *flag.FlagSet {
	fs := flag.NewFlagSet("flashsale", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: flashsale %s\n\n"+
			"Each setting of flashsale is also read from FLASHSALE_ + its flag's name in upper case,\n"+
			"- as _ (FLASHSALE_REDIS_URL for --redis-url); flags win.\n\n", synopsis)
		fs.PrintDefaults()
	}
	cfg.Flags(fs)
	return fs
}

// parseFlags parses args and the environment into cfg and fs. -h and
// --help print the usage on stdout and give errHelp (exit 0); a bad flag
// prints it on stderr.
func parseFlags(cfg *node.Config, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	var out bytes.Buffer
	fs.SetOutput(&out)
	err := cfg.Parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		_, _ = io.Copy(stdout, &out)
		return errHelp
	}
	_, _ = io.Copy(stderr, &out)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return nil
}

func parse(synopsis string, args []string, stdout, stderr io.Writer) (*node.Config, error) {
	var cfg node.Config
	fs := newFlagSet(synopsis, &cfg)
	if err := parseFlags(&cfg, fs, args, stdout, stderr); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func serve(args []string, stdout, stderr io.Writer) error {
	cfg, err := parse("serve [flags]", args, stdout, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	log.Info("starting flashsale", "version", version)
	if err := cfg.DevDefaults(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	n, err := node.New(ctx, *cfg, log)
	if err != nil {
		return err
	}
	addr, err := n.Listen()
	if err != nil {
		n.Close()
		return err
	}
	if cfg.Dev {
		if err := devBanner(ctx, n, cfg, addr.String(), stdout); err != nil {
			n.Close()
			return err
		}
	}
	return n.Run(ctx)
}

// sampleSaleID is the demo sale --dev creates.
const sampleSaleID = "demo-phone"

func devBanner(ctx context.Context, n *node.Node, cfg *node.Config, addr string, stdout io.Writer) error {
	if cfg.SampleSale {
		if _, err := n.Sales.Get(ctx, sampleSaleID); errors.Is(err, sale.ErrNotFound) {
			s := sampleSale()
			if err := n.Sales.Create(ctx, s); err != nil && !errors.Is(err, sale.ErrExists) {
				return fmt.Errorf("create the sample sale: %w", err)
			}
		} else if err != nil {
			return err
		}
	}
	base := "http://" + addr
	fmt.Fprintf(stdout, `
flashsale is running in demo mode (--dev) on %s

  Waiting page:      %s/sales/%s
  Operator console:  %s/admin
  Admin token:       %s
  All sales:         %s/

Open the waiting page in a few browser tabs, then raise the admission rate
in the console. Stop with Ctrl-C.

`, base, base, sampleSaleID, base, cfg.AdminToken, base)
	return nil
}

func sampleSale() *sale.Sale {
	now := time.Now().UTC().Truncate(time.Second)
	rate, maxActive, ttl, hold, per, stock := 1.0, 20, 120, 300, 2, 100
	name, currency, mode := "Phone X (demo)", "EUR", sale.FIFO
	price := int64(79900)
	abandon, ret := 30, 900
	id := sampleSaleID
	starts := now.Format(time.RFC3339)
	req := sale.CreateRequest{ID: &id, Name: &name, PriceCents: &price, Currency: &currency, Stock: &stock,
		StartsAt: &starts, AdmissionRate: &rate, MaxActive: &maxActive, TicketTTL: &ttl, HoldTTL: &hold,
		PerUserLimit: &per, QueueMode: &mode, AbandonAfter: &abandon, ReturnWindow: &ret}
	s, err := req.Build(now)
	if err != nil {
		panic(err) // a fixed, valid request
	}
	return s
}

func migrate(args []string, stdout, stderr io.Writer) error {
	cfg, err := parse("migrate [flags]", args, stdout, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	applied, err := migrations.Apply(ctx, cfg.MySQLDSN)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "schema up to date")
		return nil
	}
	fmt.Fprintln(stdout, "applied migrations", applied)
	return nil
}

func token(args []string, stdout, stderr io.Writer) error {
	var cfg node.Config
	fs := newFlagSet("token --user U [flags]", &cfg)
	user := fs.String("user", "", "user id (the token's sub)")
	ttl := fs.Duration("ttl", 12*time.Hour, "token lifetime")
	if err := parseFlags(&cfg, fs, args, stdout, stderr); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("--user is required")
	}
	secret := cfg.IdentitySecret
	if secret == "" {
		s, err := node.DevSecret(cfg.DataDir, "identity-secret")
		if err != nil {
			return fmt.Errorf("no --identity-secret and no dev secret in --data-dir %s: %w", cfg.DataDir, err)
		}
		secret = s
	}
	tok, _, err := identity.Mint([]byte(secret), *user, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// errDifferences is reconcile's answer when Redis and MySQL still disagree
// (exit code 1).
var errDifferences = errors.New("differences remain")

func reconcile(args []string, stdout, stderr io.Writer) error {
	var cfg node.Config
	fs := newFlagSet("reconcile --sale S [--repair] [flags]", &cfg)
	saleID := fs.String("sale", "", "the sale to reconcile (required)")
	repair := fs.Bool("repair", false, "make Redis agree with MySQL: settle pending orders now, restore or remove buyers, used tickets and holds, recompute the units")
	if err := parseFlags(&cfg, fs, args, stdout, stderr); err != nil {
		return err
	}
	if *saleID == "" {
		return errors.New("--sale is required")
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	svc, closeAll, err := node.OpenCheckout(cfg, log)
	if err != nil {
		return err
	}
	defer closeAll()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	rep, err := svc.Reconcile(ctx, *saleID, *repair)
	if rep != nil {
		for _, d := range rep.Differences {
			fmt.Fprintln(stdout, d)
		}
		if *repair && len(rep.Remaining) > 0 {
			fmt.Fprintln(stdout, "still different after the repair:")
			for _, d := range rep.Remaining {
				fmt.Fprintln(stdout, d)
			}
		}
	}
	if err != nil {
		return err
	}
	switch n := len(rep.Remaining); n {
	case 0:
		fmt.Fprintln(stdout, "consistent")
		return nil
	case 1:
		fmt.Fprintln(stdout, "1 difference")
	default:
		fmt.Fprintf(stdout, "%d differences\n", n)
	}
	return errDifferences
}
