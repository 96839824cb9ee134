// Package multinode holds tests and benchmarks that run several real
// flashsale processes (the built cmd/flashsale binary, started with
// `flashsale serve`) on one Redis key prefix and one MySQL database: leader
// failover of the admitter, frames crossing nodes through the event stream,
// and the issue-5 measurements (admission-rate error, admitted-to-frame
// latency, bytes per waiter, failover gap). It has no code of its own.
//
// The tests are skipped with -short (they build the binary). The
// benchmarks run only with FLASHSALE_BENCH=1; docs/BENCHMARKS.md has the
// commands and the figures.
package multinode
