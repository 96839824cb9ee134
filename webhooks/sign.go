package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// Key is the HMAC key of a --webhook-secret: the base64-decoded part after
// "whsec_" when the secret has that prefix (the Standard Webhooks form),
// else the secret's bytes.
func Key(secret string) ([]byte, error) {
	if secret == "" {
		return nil, errors.New("--webhook-secret is required with --webhook-url")
	}
	rest, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return []byte(secret), nil
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(key) == 0 {
		return nil, errors.New(`--webhook-secret: after "whsec_" must come base64 (the Standard Webhooks form), or give a secret without that prefix`)
	}
	return key, nil
}

// Sign is the webhook-signature header of a message: "v1," and the base64
// HMAC-SHA256 of id + "." + timestamp + "." + body (Standard Webhooks).
func Sign(key []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(timestamp, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
