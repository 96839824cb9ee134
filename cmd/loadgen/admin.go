package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// adminCall makes an operator call to the server at base with the admin
// token: body (if any) as JSON, the answer (at most 1 MiB) into into (if
// any); a non-2xx answer is an error that quotes it.
func adminCall(ctx context.Context, client *http.Client, base, token, method, path string, body, into any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if into != nil {
		return json.Unmarshal(b, into)
	}
	return nil
}

// readAnswer reads a shopper call's answer and closes it: its status, its
// JSON body into a new T (at most 1 MiB; a non-JSON answer keeps its
// status and a zero T) and its Retry-After in seconds (0 when none).
func readAnswer[T any](resp *http.Response) (status int, a *T, retryAfter int, err error) {
	defer resp.Body.Close()
	a = new(T)
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, a, 0, err
	}
	if len(b) > 0 {
		_ = json.Unmarshal(b, a)
	}
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return resp.StatusCode, a, ra, nil
}
