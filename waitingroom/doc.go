// Package waitingroom is the virtual waiting room: the queue (join.lua,
// [Queue]), the leader that admits from its head ([Admitter]), the hub that
// pushes each shopper's socket its position and admission ([Hub]), and the
// shopper and operator HTTP API ([Server]).
//
// # Recovery after a Redis loss
//
// MySQL outlives Redis, but the queue lives only in Redis; when Redis loses
// a sale's keys (a flush, a restart without persistence, a failover to an
// empty or lagging replica) the nodes put the waiters back, in this order:
//
//  1. The sale's live copy is written again with a new generation ("gen")
//     and a requeue window ("requeue_until", [sale.RequeueWindow]): by the
//     first read of the sale (sale.Store.Get, publish.lua), or by
//     sale.Store.Regenerate (regen.lua) when Redis came back behind MySQL. A script that
//     finds no live state answers [ErrNoState], which starts the checkout's
//     rebuild ([Config].OnNoState, [AdmitterConfig].OnNoState); a hub whose
//     sockets wait in a sale with no rank table reads the sale (Hub.tick),
//     so that happens even when no request comes.
//  2. Every node notices the new generation: the rank table carries it
//     (ranks.lua, Admitter.publishRanks), and each node compares it with the
//     one it saw when it began following the sale (Hub.track, Hub.tick).
//  3. The hub puts back the waiters of its sockets at the places it knows
//     (Hub.requeue, join.lua's requeue op), keeping the old generation until
//     that succeeds, so the next tick tries again.
//  4. A shopper who only polls is put back by their queue token, which
//     remembers their place and its generation (Server.join), on a status or
//     a socket's first read (Server.statusAt, Queue.StatusAt), unless they
//     left that place (leaves.go: Server.leave records it, leaves.gaveUp
//     checks it).
//  5. While "requeue_until" lasts, a newcomer's join and the status of
//     someone not back yet answer 503 ([KindRestoring], errRestoring; a
//     socket closes with "try again later"), and no node pushes positions
//     (the rank table's restoring flag, Hub.tick), so nobody lands ahead of
//     a waiter being put back and no position goes up.
//
// The checkout side lives in the checkout package: Service.Rebuild
// (checkout/rebuild.go) restores the units, buyers, used tickets and holds
// from MySQL, and Service.Revalidate (checkout/revalidate.go) repairs a sale
// after a Redis restart that may have lost its last writes, then calls
// sale.Store.Regenerate (step 1); until then the admitter admits no one
// from that sale ([ErrStale]).
package waitingroom
