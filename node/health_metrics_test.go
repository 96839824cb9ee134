package node_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// TestHealthMetrics: what the alerts read (deploy/prometheus/alerts.yml):
// the stores answer, the MySQL breaker is closed, the leader of an open
// sale says so, and its seconds are sampled consistent.
func TestHealthMetrics(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := s.CreateSale(t, map[string]any{"stock": 5})["id"].(string)
	metrics := func() string {
		r := s.Do(t, "GET", "/metrics", "", nil)
		require.Equal(t, http.StatusOK, r.Status)
		return string(r.Body)
	}
	testenv.Eventually(t, 5*time.Second, func() bool {
		return regexpFind(`(?m)^flashsale_admitter_leader\{sale="`+saleID+`"\} 1$`, metrics())
	}, "the leader exports its sale")
	testenv.Eventually(t, 5*time.Second, func() bool {
		return regexpFind(`(?m)^flashsale_sale_samples_total\{consistent="true"\} [1-9]`, metrics())
	}, "the sampler counts the sale's consistent seconds")
	m := metrics()
	for _, want := range []string{`(?m)^flashsale_store_up\{store="redis"\} 1$`, `(?m)^flashsale_store_up\{store="mysql"\} 1$`,
		`(?m)^flashsale_mysql_breaker_open 0$`, `(?m)^flashsale_websocket_dropped_total\{reason="slow"\} 0$`} {
		require.True(t, regexpFind(want, m), "%s in:\n%s", want, m)
	}
}
