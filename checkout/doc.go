// Package checkout sells the units: ticket verification (also as middleware
// for the shop's own services), the atomic reserve step in Redis, the
// durable order in MySQL, compensation, holds and their expiry.
//
// A checkout ([Service.Buy], checkout.go) reserves in Redis (reserve.lua),
// leaving a pending mark, then waits for MySQL: [Orders] (orders.go) keeps
// the orders, written by one group-commit writer per sale (writer.go),
// behind a circuit breaker (breaker.go). A durable order is finalized in
// Redis; one that failed or whose outcome is unknown is compensated
// (compensation.go). Held orders are confirmed, cancelled or expired in
// holds.go. The [Sweeper] (sweeper.go) runs the background passes, each in
// the file of its concept.
//
// # Recovery after a Redis loss
//
// MySQL is the record; Redis holds the live state the scripts sell from
// (units, buyers, used tickets, holds, pending marks). Redis can lose it in
// two ways, and the checkout notices both by itself:
//
//  1. The keys are gone (a flush, a restart without persistence, a failover
//     to an empty replica). A script answers "nostate" ([ErrNoState]: the
//     checkout answers 503) and [Service.RebuildSoon] runs [Service.Rebuild]
//     (rebuild.go), once at a time per sale; the waiting room calls the same
//     hook. Under the sale's rebuild lock it writes the live copy again
//     (sale.Store.Republish: a new generation, so the waiting room puts its
//     waiters back), reads one snapshot of MySQL ([Orders.SaleSnapshot]),
//     restores buyers, used tickets and holds, writes the units only if
//     still missing (restore.lua) and stamps the sale "restored" (stamp.lua).
//  2. The keys came back behind (a restart from an old snapshot, a failover
//     to a lagging replica). The sale's stamp names another Redis server
//     process (cfg field rid against the prelude's run_id), so reserve.lua
//     answers "stale" ([ErrStale]: 503) and sells nothing. revalidateSoon
//     (on that answer) and the sweeper's checkStamps (every tick) run
//     [Service.Revalidate] (revalidate.go): under the same lock it settles
//     every pending mark by what MySQL has (repairPending, pending.go),
//     repairs Redis from MySQL in one guarded step (compare and
//     reconcile.lua, reconcile.go), which stamps the sale "restored", and
//     gives the sale a new generation (sale.Store.Regenerate) so the waiting
//     room puts its waiters back. A sale whose keys are gone is rebuilt as
//     in 1.
//  3. Either way, an order in flight during the restore may land in MySQL
//     after the restore read it: [SweeperConfig].PendingAge later the
//     sweeper's checkStamps finds the sale due for a second check
//     ("recheck", check.lua) and recheck compares once more, puts such
//     orders back and clears the note.
//
// Apart from a Redis loss, a process that dies between the Redis step and
// MySQL leaves its pending mark: the sweeper settles it once PendingAge old
// ([Service.ReconcilePending], pending.go), finalized when MySQL has the
// order, else tombstoned ([Orders.Tombstone]) and undone. `flashsale
// reconcile` runs [Service.Reconcile] by hand: a dry run reports the
// differences, --repair makes Redis agree with MySQL as step 2 does.
//
// Every MySQL read and write of recovery is an [Orders] method, through its
// breaker: while MySQL does not answer, recovery fails fast and the next
// answer or tick tries again. The waiting room's side (putting the waiters
// back) is told in package waitingroom.
package checkout
