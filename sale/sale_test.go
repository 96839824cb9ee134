package sale_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
)

// TestAdmissionRateBounds: a rate below 0.001/s (or not a number) is a 422
// naming the field, on create and on PATCH; the bounds themselves pass.
func TestAdmissionRateBounds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rate float64
		ok   bool
	}{{1e-300, false}, {0, false}, {-1, false}, {0.0009, false}, {0.001, true}, {0.5, true}, {1e6, true}, {1e6 + 1, false}} {
		name := "x"
		price, stock := int64(1), 1
		cur := "EUR"
		r := tc.rate
		create := sale.CreateRequest{Name: &name, PriceCents: &price, Currency: &cur, Stock: &stock, AdmissionRate: &r}
		_, err := create.Build(time.Now())
		patch := sale.PatchRequest{AdmissionRate: &r}
		perr := patch.Validate()
		for _, e := range []error{err, perr} {
			if tc.ok {
				require.NoError(t, e, "rate %g", tc.rate)
				continue
			}
			var ae *api.Error
			require.True(t, errors.As(e, &ae), "rate %g: %v", tc.rate, e)
			require.Equal(t, http.StatusUnprocessableEntity, ae.Status)
			require.Contains(t, ae.Message, "admission_rate")
		}
	}
}
