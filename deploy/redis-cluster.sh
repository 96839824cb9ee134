#!/usr/bin/env bash
# A local 3-master Redis Cluster for flashsale's cluster tests (--redis-cluster),
# on 127.0.0.1:7000-7002 (REDIS_CLUSTER_PORTS), no replicas. Run by services.sh;
# idempotent and quick when the cluster is up (cluster_state:ok on every node).
#
# Each node keeps its data and nodes.conf in /var/lib/redis-cluster-<port>, so a
# restart of the machine brings the same cluster back. Like services.sh it needs
# root (or sudo) and serialises on services.sh's lock when run from it.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

read -r -a ports <<<"${REDIS_CLUSTER_PORTS:-7000 7001 7002}"
timeout_s="${SERVICES_TIMEOUT:-60}"
say() { printf '%s\n' "$*"; }
die() { printf 'redis-cluster.sh: %s\n' "$*" >&2; exit 1; }
if ((EUID == 0)); then as_root() { "$@"; }; else as_root() { sudo -n -- "$@" || sudo -- "$@"; }; fi
((${#ports[@]} >= 3)) || die "a cluster needs 3 masters; REDIS_CLUSTER_PORTS has ${#ports[@]}"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || die "redis-server and redis-cli are needed (services.sh installs them)"

cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
up() { [[ "$(cli "$1" ping 2>/dev/null)" == PONG ]]; }
state_ok() { cli "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }

all_ok=1
for p in "${ports[@]}"; do state_ok "$p" || all_ok=0; done
if ((all_ok)); then
	say "redis cluster: already up on ${ports[*]}"
	exit 0
fi

for p in "${ports[@]}"; do
	[[ "$p" =~ ^[0-9]+$ ]] || die "REDIS_CLUSTER_PORTS: '$p' is not a port"
	if up "$p"; then continue; fi
	dir="/var/lib/redis-cluster-$p"
	as_root mkdir -p "$dir" /var/log/redis
	# shellcheck disable=SC2016 # expanded by the inner bash
	as_root bash -c 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; exec "$@"' start \
		redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
		--cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 5000 \
		--dir "$dir" --appendonly yes --appendfsync everysec --save "" \
		--daemonize yes --logfile "/var/log/redis/redis-cluster-$p.log" \
		--pidfile "/run/redis-cluster-$p.pid" 9>&-
done
deadline=$((SECONDS + timeout_s))
for p in "${ports[@]}"; do
	until up "$p"; do
		((SECONDS < deadline)) || { as_root tail -n 20 "/var/log/redis/redis-cluster-$p.log" >&2 || true; die "node $p did not answer within ${timeout_s}s"; }
		sleep 0.2
	done
done

# A node that already knows a cluster (nodes.conf from an earlier run) rejoins it by
# itself; only a fresh set of nodes is created into one.
if [[ "$(cli "${ports[0]}" cluster info | sed -n 's/^cluster_known_nodes:\([0-9]*\).*/\1/p')" -lt "${#ports[@]}" ]]; then
	addrs=()
	for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
	cli "${ports[0]}" --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >/dev/null ||
		die "redis-cli --cluster create failed (a node may hold keys or a stale nodes.conf: remove /var/lib/redis-cluster-* and retry)"
	say "redis cluster: created on ${ports[*]}"
fi
for p in "${ports[@]}"; do
	until state_ok "$p"; do
		((SECONDS < deadline)) || die "cluster not ok on $p within ${timeout_s}s: $(cli "$p" cluster info | head -1)"
		sleep 0.2
	done
done
say "redis cluster: up on ${ports[*]}"
