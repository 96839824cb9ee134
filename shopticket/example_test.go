package shopticket_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flashsale/flashsale/shopticket"
)

// A shop's checkout service accepts the shoppers flashsale admitted to the
// sale "phone-drop". Here a local server stands in for flashsale's JWKS and
// signs a ticket as flashsale does; a shop points JWKSURL at
// https://<flashsale>/.well-known/jwks.json instead.
func Example() {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	flashsale := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"keys":[{"kty":"OKP","crv":"Ed25519","x":%q,"kid":"k1","use":"sig","alg":"EdDSA"}]}`,
			base64.RawURLEncoding.EncodeToString(pub))
	}))
	defer flashsale.Close()
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"iss": "flashsale", "sub": "alice", "aud": "phone-drop", "use": "ticket", "jti": "t-1",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	})
	tok.Header["kid"] = "k1"
	ticket, err := tok.SignedString(priv)
	if err != nil {
		log.Fatal(err)
	}

	// The shop's side.
	v, err := shopticket.New(shopticket.Config{
		JWKSURL: flashsale.URL + "/.well-known/jwks.json",
		Sale:    "phone-drop",
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	checkout := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := shopticket.FromContext(r.Context())
		fmt.Fprintf(w, "%s may buy in %s", c.User, c.Sale)
	})
	shop := httptest.NewServer(v.Middleware(checkout))
	defer shop.Close()

	get := func(url, bearer string) {
		req, _ := http.NewRequest("GET", url, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%d %s\n", resp.StatusCode, body)
	}
	// The waiting page sends the admitted shopper to the sale's return_url
	// with the ticket in fs_ticket; the shop's front end may send it as a
	// bearer token instead.
	get(shop.URL+"/checkout?fs_ticket="+ticket, "")
	get(shop.URL+"/checkout", ticket)
	get(shop.URL+"/checkout", "")
	// Output:
	// 200 alice may buy in phone-drop
	// 200 alice may buy in phone-drop
	// 401 {"error":{"code":"ticket_invalid","message":"a ticket is required: send it in an Authorization: Bearer header or the fs_ticket query parameter"}}
}
