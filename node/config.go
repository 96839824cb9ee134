// Package node runs a flashsale process: the roles it was asked for
// (waitingroom, checkout, admitter, or all), their shared stores and keys,
// the HTTP server, health and metrics, and a graceful shutdown.
package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/clientaddr"
	"github.com/flashsale/flashsale/ratelimit"
	"github.com/flashsale/flashsale/ticket"
	"github.com/flashsale/flashsale/webhooks"
)

// Config is every setting of `flashsale serve`. Each is a flag and a
// FLASHSALE_* environment variable (flags win), except the timeouts marked
// "not a flag", which the contract fixes and tests shorten.
type Config struct {
	Listen           string
	Roles            []string
	RedisURL         string
	MySQLDSN         string
	AdminToken       string
	ServiceToken     string
	IdentitySecret   string
	IdentityJWKSURL  string
	IdentityIssuer   string
	IdentityAudience string
	TicketKey        string // path of the Ed25519 PEM
	TicketIssuer     string
	AllowedOrigins   []string
	// RedisCluster (--redis-cluster) reads RedisURL as a Redis Cluster URL
	// (redis://h1:7000?addr=h2:7001&addr=h3:7002).
	RedisCluster bool
	// CORSOrigins (--cors-origins) are shops' front ends on other origins
	// that may call the shopper and checkout API with Bearer tokens (and
	// open its WebSockets).
	CORSOrigins []string
	Dev         bool
	DataDir     string
	// KeyPrefix prefixes every Redis key (default "fs"); tests and shared
	// Redis servers use their own.
	KeyPrefix string
	// ShutdownDelay is how long /readyz answers 503 before the server stops
	// accepting, so a load balancer stops sending first. Default 0.
	ShutdownDelay time.Duration
	// SampleSale makes --dev create a demo sale (default true).
	SampleSale bool
	// DebugListen, when set, serves net/http/pprof on this address (keep it
	// private: profiles show internals).
	DebugListen string
	// ReconcilePendingAfter is how old an order left pending in Redis (its
	// process died between the Redis step and MySQL) must be before the
	// checkout's sweeper settles it by what MySQL has; also how long after
	// a restore from MySQL a sale is checked once more. Default (0) 15 s;
	// at least MinReconcilePendingAfter.
	ReconcilePendingAfter time.Duration
	// TrustedProxies are the proxies (--trusted-proxies, CIDRs) whose
	// X-Forwarded-For names the client and whose X-Forwarded-Proto says
	// the client used HTTPS. Nil trusts none: the client is the TCP peer.
	TrustedProxies *clientaddr.Resolver
	// MetricsListen, when set, serves /metrics on this address only, and
	// the main listener answers 404 for it. Empty (the default) serves
	// /metrics on the main listener.
	MetricsListen string
	// IPRate, IPBurst, UserRate and UserBurst are the shopper calls' rate
	// limits per client address and per user (--ip-rate 20, --ip-burst 40,
	// --user-rate 5, --user-burst 10 as flags). A rate of 0 turns that
	// limit off, and so does the zero Config (tests that storm from one
	// address build it without the flags).
	IPRate, UserRate   float64
	IPBurst, UserBurst int
	// CaptchaVerifyURL, CaptchaSecret and CaptchaSiteKey configure the
	// siteverify captcha (Turnstile, hCaptcha, reCAPTCHA) that sales with
	// join_challenge "captcha" ask for; all three or none.
	CaptchaVerifyURL, CaptchaSecret, CaptchaSiteKey string
	// WebhookURL and WebhookSecret turn the webhooks on (--webhook-url,
	// --webhook-secret: both or none); WebhookTimeout bounds one delivery
	// (--webhook-timeout, default 10 s).
	WebhookURL, WebhookSecret string
	WebhookTimeout            time.Duration
	// ThemeDir is --theme-dir: the shop's logo, theme.css and text
	// overrides for the shopper pages (web/theme.go). Empty: none.
	ThemeDir string
	// HeaderTimeout is how long a client has to send a request's headers
	// before the connection is closed. Not a flag (the contract says 10 s);
	// 0 means 10 s.
	HeaderTimeout time.Duration
	// BodyTimeout is how long a client has, once its headers are in, to
	// send the body; then the connection is closed. A WebSocket is not cut
	// by it. Not a flag (the contract says 30 s); 0 means 30 s.
	BodyTimeout time.Duration

	rolesFlag, originsFlag, corsFlag *string // raw list flags, read by Finish
	// own are the flags Flags registered: the ones FLASHSALE_* variables
	// fill (a command's own flags, such as token's --user, are not).
	own []string
}

// Defaults of the settings whose zero means a default.
const (
	DefaultHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout   = 30 * time.Second
)

// MaxHeaderBytes is the most a request line and its headers may take;
// more is refused with 431.
const MaxHeaderBytes = 64 << 10

// MinReconcilePendingAfter is the least --reconcile-pending-after: past the
// checkout's MySQL write timeout (4 s), so the sweeper never settles an
// order whose request is still deciding it.
const MinReconcilePendingAfter = 5 * time.Second

// Roles a process can run.
const (
	RoleWaitingRoom = "waitingroom"
	RoleCheckout    = "checkout"
	RoleAdmitter    = "admitter"
	RoleAll         = "all"
)

var knownRoles = []string{RoleWaitingRoom, RoleCheckout, RoleAdmitter}

// Flags registers every setting on fs with its default; Parse then fills
// the ones the command line did not give from FLASHSALE_* variables.
func (c *Config) Flags(fs *flag.FlagSet) {
	str := func(p *string, name, def, usage string) {
		fs.StringVar(p, name, def, usage)
		c.own = append(c.own, name)
	}
	boolean := func(p *bool, name string, def bool, usage string) {
		fs.BoolVar(p, name, def, usage)
		c.own = append(c.own, name)
	}
	duration := func(p *time.Duration, name string, def time.Duration, usage string) {
		fs.DurationVar(p, name, def, usage)
		c.own = append(c.own, name)
	}
	var roles, origins string
	str(&c.Listen, "listen", "127.0.0.1:8080", "address to serve HTTP on")
	str(&roles, "roles", "all", "roles to run: all, or a comma list of waitingroom, checkout, admitter")
	str(&c.RedisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis URL")
	str(&c.MySQLDSN, "mysql-dsn", "flashsale:flashsale@tcp(127.0.0.1:3306)/flashsale?parseTime=true", "MySQL DSN (go-sql-driver format)")
	str(&c.AdminToken, "admin-token", "", "operators' bearer token (required unless --dev)")
	str(&c.ServiceToken, "service-token", "", "the payment backend's bearer token, for confirming orders")
	str(&c.IdentitySecret, "identity-secret", "", "HS256 secret of the shop's user tokens")
	str(&c.IdentityJWKSURL, "identity-jwks-url", "", "JWKS URL of the shop's user tokens (RS256, ES256, EdDSA)")
	str(&c.IdentityIssuer, "identity-issuer", "", "required iss of user tokens (not checked when empty)")
	str(&c.IdentityAudience, "identity-audience", "", "required aud of user tokens (not checked when empty)")
	str(&c.TicketKey, "ticket-key", "", "Ed25519 PKCS#8 PEM private key file for tickets (openssl genpkey -algorithm ed25519)")
	str(&c.TicketIssuer, "ticket-issuer", "flashsale", "iss claim of tickets")
	str(&origins, "allowed-origins", "", "comma list of origins allowed to open WebSockets (default: the listen address's origin)")
	str(&c.DataDir, "data-dir", "./.flashsale", "where --dev keeps the keys and tokens it generates")
	str(&c.KeyPrefix, "redis-key-prefix", "fs", "prefix of every Redis key")
	str(&c.DebugListen, "debug-listen", "", "serve net/http/pprof on this address (off when empty; keep it private)")
	str(&c.MetricsListen, "metrics-listen", "", "serve /metrics on this address only (default: on --listen)")
	str(&c.CaptchaVerifyURL, "captcha-verify-url", "", "siteverify URL of the captcha (e.g. https://challenges.cloudflare.com/turnstile/v0/siteverify)")
	str(&c.CaptchaSecret, "captcha-secret", "", "the captcha's secret key")
	str(&c.CaptchaSiteKey, "captcha-site-key", "", "the captcha's site key, for the waiting page's widget")
	str(&c.ThemeDir, "theme-dir", "", "directory with the shopper pages' logo.svg or logo.png, theme.css and text.<lang>.json (default none)")
	str(&c.WebhookURL, "webhook-url", "", "where the shop's webhook events are POSTed (default none: webhooks off)")
	str(&c.WebhookSecret, "webhook-secret", "", "the webhooks' signing secret (whsec_<base64>, or any string); required with --webhook-url")
	duration(&c.WebhookTimeout, "webhook-timeout", 10*time.Second, "time a webhook receiver has to answer one delivery")
	boolean(&c.RedisCluster, "redis-cluster", false, "--redis-url is a Redis Cluster: redis://h1:7000?addr=h2:7001&addr=h3:7002")
	boolean(&c.Dev, "dev", false, "demo mode: generated keys and tokens, dev user tokens, dev pay, a sample sale (loopback --listen only)")
	duration(&c.ShutdownDelay, "shutdown-delay", 0, "time /readyz answers 503 before shutdown")
	boolean(&c.SampleSale, "sample-sale", true, "with --dev, create the demo sale")
	duration(&c.ReconcilePendingAfter, "reconcile-pending-after", 0,
		"age at which an order left pending in Redis by a dead process is settled by what MySQL has (0: 15s)")
	def := ratelimit.DefaultConfig()
	fs.Float64Var(&c.IPRate, "ip-rate", def.IPRate, "shopper calls per second per client address (0: no limit)")
	fs.IntVar(&c.IPBurst, "ip-burst", def.IPBurst, "burst of shopper calls per client address")
	fs.Float64Var(&c.UserRate, "user-rate", def.UserRate, "shopper calls per second per user (0: no limit)")
	fs.IntVar(&c.UserBurst, "user-burst", def.UserBurst, "burst of shopper calls per user")
	c.own = append(c.own, "ip-rate", "ip-burst", "user-rate", "user-burst")
	fs.Var(proxiesFlag{&c.TrustedProxies}, "trusted-proxies",
		"comma list of CIDRs of proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (default none)")
	c.own = append(c.own, "trusted-proxies")
	var cors string
	str(&cors, "cors-origins", "", "comma list of origins (a shop's own front end) allowed to call the shopper and checkout API from the browser with Bearer tokens (default none)")
	c.rolesFlag, c.originsFlag, c.corsFlag = &roles, &origins, &cors
}

// proxiesFlag is --trusted-proxies: parsed when set, so a bad CIDR stops
// the start naming the flag (or its variable).
type proxiesFlag struct{ r **clientaddr.Resolver }

func (p proxiesFlag) String() string {
	if p.r == nil {
		return ""
	}
	return (*p.r).String()
}

func (p proxiesFlag) Set(s string) error {
	r, err := clientaddr.Parse(s)
	if err != nil {
		return err
	}
	*p.r = r
	return nil
}

// Parse parses args into fs (the flags of Flags and any the command added),
// then fills each setting of c the command line did not give from its
// FLASHSALE_* variable (flags win; an empty variable counts as unset), then
// reads the lists. A variable whose value does not parse is an error naming
// it; every such problem is reported at once. -h and --help give
// flag.ErrHelp.
func (c *Config) Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	for _, name := range c.own {
		v := os.Getenv(envName(name))
		if given[name] || v == "" {
			continue
		}
		if err := setFromEnv(fs, name, v); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.Finish()
	return nil
}

// setFromEnv sets one flag from its variable's value, with an error that
// names the variable and says what it takes.
func setFromEnv(fs *flag.FlagSet, name, v string) error {
	f := fs.Lookup(name)
	if f == nil {
		return nil
	}
	value := v
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		// yes/no and on/off, as the environment has always taken them
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "1", "true", "yes", "on":
			value = "true"
		case "0", "false", "no", "off":
			value = "false"
		default:
			return fmt.Errorf("%s=%q is not a boolean: use true or false (or 1/0, yes/no, on/off); it sets --%s",
				envName(name), v, name)
		}
	}
	err := fs.Set(name, value)
	if err == nil {
		return nil
	}
	if g, ok := f.Value.(flag.Getter); ok {
		switch g.Get().(type) {
		case time.Duration:
			return fmt.Errorf("%s=%q is not a duration: give a number with a unit, such as 5s, 250ms or 2m; it sets --%s",
				envName(name), v, name)
		case int, int64, uint, uint64, float64:
			return fmt.Errorf("%s=%q is not a number; it sets --%s", envName(name), v, name)
		}
	}
	return fmt.Errorf("%s=%q: %v; it sets --%s", envName(name), v, err, name)
}

// Finish reads the list flags; Parse calls it.
func (c *Config) Finish() {
	if c.rolesFlag != nil {
		c.Roles = splitList(*c.rolesFlag)
	}
	if c.originsFlag != nil {
		c.AllowedOrigins = splitList(*c.originsFlag)
	}
	if c.corsFlag != nil {
		c.CORSOrigins = splitList(*c.corsFlag)
	}
	if len(c.AllowedOrigins) == 0 {
		c.AllowedOrigins = []string{"http://" + c.Listen}
		if host, port, err := net.SplitHostPort(c.Listen); err == nil && (host == "127.0.0.1" || host == "localhost") {
			c.AllowedOrigins = append(c.AllowedOrigins, "http://localhost:"+port, "http://127.0.0.1:"+port)
		}
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func envName(flagName string) string {
	return "FLASHSALE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// loopback reports whether a listen address binds only a loopback
// interface (127.0.0.0/8, ::1 or localhost); ":8080" binds them all.
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// devListenError refuses --dev on an address other hosts reach: dev mode
// hands out user tokens and pays orders for whoever asks.
func (c *Config) devListenError() error {
	if !c.Dev || loopback(c.Listen) {
		return nil
	}
	return fmt.Errorf("--listen %s with --dev: dev mode mints user tokens and pays orders for anyone who asks, "+
		"so it listens only on a loopback address (127.0.0.1, ::1 or localhost); drop --dev to serve other hosts", c.Listen)
}

// Has reports whether the process runs a role.
func (c *Config) Has(role string) bool {
	return slices.Contains(c.Roles, RoleAll) || slices.Contains(c.Roles, role)
}

// Validate returns every problem at once, each naming its flag.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Roles) == 0 {
		errs = append(errs, errors.New("--roles: give all, or a comma list of waitingroom, checkout, admitter"))
	}
	for _, r := range c.Roles {
		if r != RoleAll && !slices.Contains(knownRoles, r) {
			errs = append(errs, fmt.Errorf("--roles: unknown role %q (known: all, %s)", r, strings.Join(knownRoles, ", ")))
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen: %v", err))
	} else if err := c.devListenError(); err != nil {
		errs = append(errs, err)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-listen: %v", err))
		}
	}
	if c.RedisURL == "" {
		errs = append(errs, errors.New("--redis-url is required"))
	}
	if c.MySQLDSN == "" {
		errs = append(errs, errors.New("--mysql-dsn is required"))
	}
	if !c.Dev {
		if c.IdentitySecret == "" && c.IdentityJWKSURL == "" {
			errs = append(errs, errors.New("--identity-secret or --identity-jwks-url is required (or run with --dev)"))
		}
		if c.AdminToken == "" {
			errs = append(errs, errors.New("--admin-token is required (or run with --dev)"))
		}
		if c.TicketKey == "" {
			errs = append(errs, errors.New("--ticket-key is required: an Ed25519 PEM file (openssl genpkey -algorithm ed25519 -out ticket.pem), or run with --dev"))
		}
	}
	if c.ReconcilePendingAfter != 0 && c.ReconcilePendingAfter < MinReconcilePendingAfter {
		errs = append(errs, fmt.Errorf("--reconcile-pending-after: at least %s (a checkout waits up to 4 s for MySQL; "+
			"settling its order sooner turns slow checkouts into 503s), or 0 for the default", MinReconcilePendingAfter))
	}
	if err := c.RateLimits().Validate(); err != nil {
		errs = append(errs, err)
	}
	set := 0
	for _, v := range []string{c.CaptchaVerifyURL, c.CaptchaSecret, c.CaptchaSiteKey} {
		if v != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		errs = append(errs, errors.New("--captcha-verify-url, --captcha-secret and --captcha-site-key: give all three, or none"))
	} else if c.CaptchaVerifyURL != "" {
		if u, err := url.Parse(c.CaptchaVerifyURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--captcha-verify-url: %q is not an http(s) URL", c.CaptchaVerifyURL))
		}
	}
	if _, err := api.NewCORS(c.CORSOrigins); err != nil {
		errs = append(errs, err)
	}
	switch {
	case c.WebhookURL == "" && c.WebhookSecret != "":
		errs = append(errs, errors.New("--webhook-secret without --webhook-url: give both, or neither (webhooks off)"))
	case c.WebhookURL != "":
		if u, err := url.Parse(c.WebhookURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--webhook-url: %q is not an http(s) URL", c.WebhookURL))
		}
		if _, err := webhooks.Key(c.WebhookSecret); err != nil {
			errs = append(errs, err)
		}
	}
	if c.WebhookTimeout < 0 || c.WebhookTimeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("--webhook-timeout: between 0 (default 10s) and 5m (it is %s)", c.WebhookTimeout))
	}
	if c.ThemeDir != "" {
		if info, err := os.Stat(c.ThemeDir); err != nil || !info.IsDir() {
			errs = append(errs, fmt.Errorf("--theme-dir %s: not a directory; give the directory that holds theme.css, logo.svg and text.<lang>.json, or leave it empty", c.ThemeDir))
		}
	}
	if c.IdentitySecret != "" && c.IdentityJWKSURL != "" {
		errs = append(errs, errors.New("--identity-secret and --identity-jwks-url: give one, not both"))
	}
	return errors.Join(errs...)
}

// DevDefaults fills what --dev generates and keeps in --data-dir: the
// ticket key, the admin and service tokens, the identity secret, so several
// dev nodes on one machine share them.
func (c *Config) DevDefaults() error {
	if !c.Dev {
		return nil
	}
	// Refused before anything is generated.
	if err := c.devListenError(); err != nil {
		return err
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if c.TicketKey == "" {
		c.TicketKey = filepath.Join(c.DataDir, "ticket-key.pem")
		if err := ticket.GenerateKeyFile(c.TicketKey); err != nil {
			return fmt.Errorf("generate ticket key: %w", err)
		}
	}
	for _, s := range []struct {
		p    *string
		file string
	}{{&c.AdminToken, "admin-token"}, {&c.ServiceToken, "service-token"}, {&c.IdentitySecret, "identity-secret"}} {
		if *s.p != "" || (s.file == "identity-secret" && c.IdentityJWKSURL != "") {
			continue
		}
		v, err := DevSecret(c.DataDir, s.file)
		if err != nil {
			return err
		}
		*s.p = v
	}
	return nil
}

// DevSecret reads (making it on first use) a generated secret in dataDir.
func DevSecret(dataDir, name string) (string, error) {
	path := filepath.Join(dataDir, name)
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	v := hex.EncodeToString(b)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) { // another node made it first
		b, err := os.ReadFile(path)
		return strings.TrimSpace(string(b)), err
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	defer f.Close()
	_, err = f.WriteString(v + "\n")
	return v, err
}

// RateLimits is the rate limiter's config of c.
func (c *Config) RateLimits() ratelimit.Config {
	return ratelimit.Config{IPRate: c.IPRate, IPBurst: c.IPBurst, UserRate: c.UserRate, UserBurst: c.UserBurst}
}
