// Package ticket signs and verifies the tokens flashsale issues: tickets
// (Ed25519 JWTs that anyone can verify from the JWKS) and queue tokens (HS256
// JWTs, keyed from the ticket key, that only flashsale nodes verify).
package ticket

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// KeySet is the signing key and the previous keys still accepted.
type KeySet struct {
	Current  ed25519.PrivateKey
	Kid      string
	Previous map[string]ed25519.PublicKey // kid → key, verify only

	// previousQueue holds the queue-token keys of the previous keys, in file
	// order: a queue token lives as long as its sale, so a rotation must not
	// log out the shoppers who wait (their tokens were signed before it).
	previousQueue [][]byte
}

// LoadKeySet reads a PEM file of PKCS#8 Ed25519 private keys: the first
// signs, any further ones (previous keys during a rotation) only verify.
func LoadKeySet(path string) (*KeySet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read ticket key: %w", err)
	}
	return ParseKeySet(b)
}

// ParseKeySet parses PEM bytes as LoadKeySet does.
func ParseKeySet(b []byte) (*KeySet, error) {
	ks := &KeySet{Previous: map[string]ed25519.PublicKey{}}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ticket key: not a PKCS#8 private key: %w", err)
		}
		ed, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, errors.New("ticket key: a key in the file is not Ed25519 (make one with: openssl genpkey -algorithm ed25519)")
		}
		pub := ed.Public().(ed25519.PublicKey)
		kid := Kid(pub)
		switch _, seen := ks.Previous[kid]; {
		case ks.Current == nil:
			ks.Current, ks.Kid = ed, kid
		case kid == ks.Kid || seen: // a key listed twice counts once
		default:
			ks.Previous[kid] = pub
			ks.previousQueue = append(ks.previousQueue, queueKeyOf(ed))
		}
	}
	if ks.Current == nil {
		return nil, errors.New("ticket key: no PEM PRIVATE KEY block found")
	}
	return ks, nil
}

// GenerateKeyFile writes a new Ed25519 key to path (mode 0600), making its
// directory, unless the file exists already.
func GenerateKeyFile(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// writeNew writes a file that must not exist yet, so two dev nodes starting
// at once agree on one key.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Kid names a public key: the first 16 characters of its SHA-256, base64url.
func Kid(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(sum[:])[:16]
}

// JWKS is the JSON Web Key Set of the current and previous public keys.
func (ks *KeySet) JWKS() []byte {
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Kid string `json:"kid"`
		Use string `json:"use"`
		Alg string `json:"alg"`
	}
	mk := func(kid string, pub ed25519.PublicKey) jwk {
		return jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), Kid: kid, Use: "sig", Alg: "EdDSA"}
	}
	keys := []jwk{mk(ks.Kid, ks.Current.Public().(ed25519.PublicKey))}
	// Previous keys in kid order: every node (and every call) serves the
	// same bytes, whatever the map's order.
	for _, kid := range slices.Sorted(maps.Keys(ks.Previous)) {
		if kid != ks.Kid { // the current key listed again in the file
			keys = append(keys, mk(kid, ks.Previous[kid]))
		}
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

// queueKeys are the HS256 keys of queue tokens: the current key's first (it
// signs), then the previous keys' (they only verify).
func (ks *KeySet) queueKeys() [][]byte {
	return append([][]byte{queueKeyOf(ks.Current)}, ks.previousQueue...)
}

// queueKeyOf derives the HS256 key for queue tokens from a ticket key, so
// every node that has the ticket key file verifies queue tokens with no
// more configuration.
func queueKeyOf(k ed25519.PrivateKey) []byte {
	m := hmac.New(sha256.New, k.Seed())
	m.Write([]byte("flashsale queue token v1"))
	return m.Sum(nil)
}
