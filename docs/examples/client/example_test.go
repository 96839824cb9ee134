package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/docs/examples/client"
	"github.com/flashsale/flashsale/testenv"
)

// bearer sets a token on each request of a generated client.
func bearer(token string) client.ClientOption {
	return client.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+token)
		return nil
	})
}

// TestGeneratedClientBuys drives a real node with the client oapi-codegen
// generated from the OpenAPI document, as a shop would: the operator
// creates a sale, a shopper joins, polls until admitted, and buys once
// with an Idempotency-Key; the retry gets the same order.
func TestGeneratedClientBuys(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	ctx := context.Background()

	operator, err := client.NewClientWithResponses(s.URL, bearer(s.AdminToken))
	require.NoError(t, err)
	id := "gen-" + testenv.RandomID()
	rate := float32(20)
	created, err := operator.CreateSaleWithResponse(ctx, client.SaleCreate{
		Id: &id, Name: "Phone X", PriceCents: 79900, Currency: "EUR", Stock: 3, AdmissionRate: &rate,
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, created.StatusCode(), "%s", created.Body)
	require.Equal(t, id, created.JSON201.Id)
	require.Equal(t, 3, created.JSON201.StockRemaining)

	shopper, err := client.NewClientWithResponses(s.URL, bearer(s.UserToken(t, "alice")))
	require.NoError(t, err)
	joined, err := shopper.JoinWithResponse(ctx, id, client.JoinRequest{})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, joined.StatusCode(), "%s", joined.Body)

	var ticket string
	require.Eventually(t, func() bool {
		// no require in here: the condition runs in another goroutine
		st, err := shopper.StatusWithResponse(ctx, id)
		if err != nil || st.JSON200 == nil {
			return false
		}
		adm, err := st.JSON200.AsAdmitted()
		ticket = adm.Ticket
		return err == nil && ticket != ""
	}, 10*time.Second, 50*time.Millisecond, "alice is admitted")

	buyer, err := client.NewClientWithResponses(s.URL, bearer(ticket))
	require.NoError(t, err)
	key := "order-1"
	qty := 1
	params := &client.CheckoutParams{IdempotencyKey: &key}
	bought, err := buyer.CheckoutWithResponse(ctx, id, params, client.CheckoutRequest{Quantity: &qty})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, bought.StatusCode(), "%s", bought.Body)
	require.Equal(t, client.OrderStatus("paid"), bought.JSON201.Status)
	require.Equal(t, 79900, bought.JSON201.AmountCents)

	again, err := buyer.CheckoutWithResponse(ctx, id, params, client.CheckoutRequest{Quantity: &qty})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, again.StatusCode(), "%s", again.Body)
	require.Equal(t, bought.JSON201.Id, again.JSON201.Id)

	got, err := shopper.GetOrderWithResponse(ctx, bought.JSON201.Id)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, got.StatusCode(), "%s", got.Body)
	require.Equal(t, "alice", got.JSON200.UserId)

	// An error answer arrives decoded as the document says.
	closed, err := operator.GetSaleWithResponse(ctx, "no-such-sale")
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, closed.StatusCode())
	require.NotNil(t, closed.JSON404)
}

// TestGeneratedClientIsCurrent fails when the document gained an operation
// the committed client lacks: run `go generate ./docs/examples/client/`.
func TestGeneratedClientIsCurrent(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../../openapi/openapi.json")
	require.NoError(t, err)
	gen, err := os.ReadFile("client.gen.go")
	require.NoError(t, err)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	n := 0
	for path, item := range doc.Paths {
		for method, op := range item {
			var o struct {
				OperationID string `json:"operationId"`
			}
			if json.Unmarshal(op, &o) != nil || o.OperationID == "" {
				continue // the path's shared parameters
			}
			name := strings.ToUpper(o.OperationID[:1]) + o.OperationID[1:]
			require.Contains(t, string(gen), "func (c *Client) "+name+"(",
				"%s %s (%s) is not in the generated client: run go generate ./docs/examples/client/", method, path, o.OperationID)
			n++
		}
	}
	require.Greater(t, n, 30)
}
