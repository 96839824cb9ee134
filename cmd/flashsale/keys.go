package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/flashsale/flashsale/ticket"
)

const keysUsage = `Usage: flashsale keys COMMAND --ticket-key FILE [flags]

Manage the ticket key file (--ticket-key of flashsale serve): PEM PKCS#8
Ed25519 private keys, the first of which signs tickets and queue tokens while
the ones after it only verify them, so that what was signed before a rotation
stays good. Every node serves all of them in /.well-known/jwks.json.

Commands:
  generate   write a new key file with one key (refuses a file that exists)
  rotate     a new key signs from now on; the current one and the previous
             ones (up to --keep) only verify. With --to KID, the key the file
             already holds under that kid signs instead of a new one.
  add        add a new key that only verifies for now, so every node publishes
             it in the JWKS before any node signs with it; promote it later
             with rotate --to KID
  list       print each key's kid and what it does

Every command writes the file atomically (a temporary file renamed over it),
mode 0600. FILE may also come from FLASHSALE_TICKET_KEY.

Flags:
`

// defaultKeep is how many previous keys rotate keeps: tickets live minutes,
// but queue tokens live until their sale ends, so a second rotation during
// a long queue must not log its waiters out.
const defaultKeep = 3

func keys(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, strings.TrimSuffix(keysUsage, "Flags:\n"))
			return errHelp
		}
		fmt.Fprint(stderr, strings.TrimSuffix(keysUsage, "Flags:\n"))
		return errors.New("keys: a command is required: generate, rotate, add or list")
	}
	cmd := args[0]
	fs := flag.NewFlagSet("flashsale keys "+cmd, flag.ContinueOnError)
	path := fs.String("ticket-key", os.Getenv("FLASHSALE_TICKET_KEY"), "the ticket key file (env FLASHSALE_TICKET_KEY)")
	var keep *int
	var to *string
	if cmd == "rotate" {
		keep = fs.Int("keep", defaultKeep, "how many previous keys to keep verifying; older ones are dropped")
		to = fs.String("to", "", "promote the key of this kid (added earlier with keys add) instead of making a new one")
	}
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), keysUsage)
		fs.PrintDefaults()
	}
	switch cmd {
	case "generate", "rotate", "add", "list":
	default:
		fmt.Fprint(stderr, strings.TrimSuffix(keysUsage, "Flags:\n"))
		return fmt.Errorf("keys: unknown command %q (generate, rotate, add or list)", cmd)
	}
	err := fs.Parse(args[1:])
	if errors.Is(err, flag.ErrHelp) {
		_, _ = io.Copy(stdout, &out)
		return errHelp
	}
	_, _ = io.Copy(stderr, &out)
	switch {
	case err != nil:
		return err
	case fs.NArg() > 0:
		return fmt.Errorf("keys %s: unexpected arguments: %v", cmd, fs.Args())
	case *path == "":
		return fmt.Errorf("keys %s: --ticket-key FILE is required (the key file of flashsale serve --ticket-key)", cmd)
	case keep != nil && *keep < 0:
		return fmt.Errorf("keys rotate: --keep must be 0 or more, not %d", *keep)
	}
	switch cmd {
	case "generate":
		return keysGenerate(*path, stdout)
	case "rotate":
		return keysRotate(*path, *keep, *to, stdout)
	case "add":
		return keysAdd(*path, stdout)
	default:
		return keysList(*path, stdout)
	}
}

func keysGenerate(path string, stdout io.Writer) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("keys generate: %s exists; to replace its signing key and keep the old one verifying, run: flashsale keys rotate --ticket-key %s", path, path)
	}
	k, err := newKey()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("keys generate: %w", err)
	}
	if err := writeKeyFile(path, []ed25519.PrivateKey{k}, false); err != nil {
		return fmt.Errorf("keys generate: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: kid %s signs tickets.\nStart every node with --ticket-key %s (the same file on each).\n", path, kidOf(k), path)
	return nil
}

func keysRotate(path string, keep int, to string, stdout io.Writer) error {
	old, err := readKeyFile(path)
	if err != nil {
		return fmt.Errorf("keys rotate: %w", err)
	}
	var next ed25519.PrivateKey
	rest := old
	if to != "" {
		i := slices.IndexFunc(old, func(k ed25519.PrivateKey) bool { return kidOf(k) == to })
		switch {
		case i < 0:
			return fmt.Errorf("keys rotate: no key of kid %q in %s (keys list shows its kids)", to, path)
		case i == 0:
			return fmt.Errorf("keys rotate: kid %q already signs", to)
		}
		next = old[i]
		rest = slices.Delete(slices.Clone(old), i, i+1)
	} else if next, err = newKey(); err != nil {
		return err
	}
	kept := rest[:min(len(rest), keep)]
	dropped := rest[len(kept):]
	if err := writeKeyFile(path, append([]ed25519.PrivateKey{next}, kept...), true); err != nil {
		return fmt.Errorf("keys rotate: %w", err)
	}
	fmt.Fprintf(stdout, "rotated %s: kid %s signs from now on; %s.\n", path, kidOf(next), stillVerify(kept))
	if len(dropped) > 0 {
		fmt.Fprintf(stdout, "Dropped (older than --keep %d): %s; what they signed no longer verifies.\n", keep, kidList(dropped))
	}
	fmt.Fprintf(stdout, `
Next:
  1. Copy %s to every node (a secret: keep it mode 0600).
  2. Restart the nodes, or roll them one by one. A node signs with the new key
     as soon as it runs with the file; tickets and queue tokens of the old key
     still verify on it, and its /.well-known/jwks.json serves every kid.
     Shops using the ticket middleware (package shopticket) fetch the new kid
     on its first ticket. While old nodes still run, a shop may fetch the JWKS
     from one of them: with many nodes, run "keys add" first, roll, then
     "keys rotate --to KID" and roll again (docs/OPERATIONS.md, Key rotation).
  3. Keep the old key in the file until what it signed has expired: tickets
     after ticket_ttl_seconds, queue tokens when their sale ends (24 h for a
     sale with no end). A later rotate drops keys beyond --keep.
`, path)
	return nil
}

func keysAdd(path string, stdout io.Writer) error {
	old, err := readKeyFile(path)
	if err != nil {
		return fmt.Errorf("keys add: %w", err)
	}
	k, err := newKey()
	if err != nil {
		return err
	}
	if err := writeKeyFile(path, append(slices.Clone(old), k), true); err != nil {
		return fmt.Errorf("keys add: %w", err)
	}
	fmt.Fprintf(stdout, `added kid %s to %s; it only verifies for now (kid %s still signs).

Next:
  1. Copy %s to every node and restart or roll them all: each then publishes
     kid %s in /.well-known/jwks.json.
  2. Wait for the shops' JWKS caches to refresh (shopticket refreshes every
     10 minutes by default).
  3. Run: flashsale keys rotate --ticket-key %s --to %s
     and roll the nodes again: the new key signs, every verifier already has it.
`, kidOf(k), path, kidOf(old[0]), path, kidOf(k), path, kidOf(k))
	return nil
}

func keysList(path string, stdout io.Writer) error {
	ks, err := readKeyFile(path)
	if err != nil {
		return fmt.Errorf("keys list: %w", err)
	}
	for i, k := range ks {
		what := "verifies"
		if i == 0 {
			what = "signs"
		}
		fmt.Fprintf(stdout, "%s  %s\n", kidOf(k), what)
	}
	return nil
}

func newKey() (ed25519.PrivateKey, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate an Ed25519 key: %w", err)
	}
	return k, nil
}

func kidOf(k ed25519.PrivateKey) string { return ticket.Kid(k.Public().(ed25519.PublicKey)) }

func kidList(ks []ed25519.PrivateKey) string {
	kids := make([]string, len(ks))
	for i, k := range ks {
		kids[i] = kidOf(k)
	}
	if len(ks) == 1 {
		return "kid " + kids[0]
	}
	return "kids " + strings.Join(kids, ", ")
}

// stillVerify says which keys verify only, in words.
func stillVerify(ks []ed25519.PrivateKey) string {
	switch len(ks) {
	case 0:
		return "no other key verifies (--keep 0)"
	case 1:
		return kidList(ks) + " still verifies"
	}
	return kidList(ks) + " still verify"
}

// readKeyFile reads the keys of a ticket key file in its order, once each,
// after checking that flashsale serve would load it.
func readKeyFile(path string) ([]ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no key file at %s; make one with: flashsale keys generate --ticket-key %s", path, path)
	}
	if err != nil {
		return nil, err
	}
	if _, err := ticket.ParseKeySet(b); err != nil {
		return nil, fmt.Errorf("%s: %w (the file is left as it was)", path, err)
	}
	var out []ed25519.PrivateKey
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil { // ParseKeySet accepted it: cannot happen
			return nil, err
		}
		ed := k.(ed25519.PrivateKey)
		if !slices.ContainsFunc(out, func(o ed25519.PrivateKey) bool { return o.Equal(ed) }) {
			out = append(out, ed)
		}
	}
	return out, nil
}

// encodeKeyFile is the file's text: a comment line before each key saying
// its kid and what it does (PEM readers, ours and openssl's, skip text
// outside the blocks).
func encodeKeyFile(ks []ed25519.PrivateKey) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# flashsale ticket keys (flashsale keys list): the first signs, the others only verify.\n")
	for i, k := range ks {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		what := "verifies only"
		if i == 0 {
			what = "signs"
		}
		fmt.Fprintf(&b, "# kid %s: %s\n", kidOf(k), what)
		if err := pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// writeKeyFile writes the keys to path atomically: a temporary file of
// mode 0600 in the same directory, synced, then renamed over path (replace)
// or linked to it (a new file: fails if path exists), so a crash or a node
// reading at the same moment sees the old file or the new one, whole. A
// symbolic link is followed: the file it names is replaced.
func writeKeyFile(path string, ks []ed25519.PrivateKey, replace bool) error {
	data, err := encodeKeyFile(ks)
	if err != nil {
		return err
	}
	// What serve would load must be what we meant to write.
	got, err := ticket.ParseKeySet(data)
	if err != nil || got.Kid != kidOf(ks[0]) || len(got.Previous) != len(ks)-1 {
		return fmt.Errorf("the new key file does not load as written (%v); nothing was written", err)
	}
	if replace {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			path = real
		}
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".ticket-key-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a rename or a link, a no-op or the spare name
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if replace {
		err = os.Rename(tmp, path)
	} else {
		err = os.Link(tmp, path)
	}
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s appeared meanwhile; nothing was written", path)
		}
		return err
	}
	// The rename is durable once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
