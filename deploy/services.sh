#!/usr/bin/env bash
# Local Redis and MariaDB for flashsale, without systemd.
#
# Called by `make run`, `make test` and CI (on a bare Debian 12 machine). It
#   1. installs redis-server, redis-tools, mariadb-server, mariadb-client, chromium,
#      gcc + libc6-dev (cgo, for `go test -race`) and prometheus (for promtool) with
#      apt-get when one of their commands is missing (SKIP_CHROMIUM=1 skips chromium, which only the headless
#      browser tests need);
#   2. starts Redis (deploy/redis.conf: AOF, appendfsync everysec) and MariaDB when
#      they do not answer, and waits until they do;
#   3. makes sure the user and database of the default DSN
#      flashsale:flashsale@tcp(127.0.0.1:3306)/flashsale exist;
#   4. starts a local 3-master Redis Cluster on 127.0.0.1:7000-7002 (redis-cluster.sh).
# It is idempotent and takes a few tens of milliseconds when everything is up.
#
# Environment: REDIS_PORT (6379), MYSQL_PORT (3306), SKIP_CHROMIUM=1, SKIP_REDIS_CLUSTER=1,
# SERVICES_TIMEOUT (seconds to wait for a server to answer, 60).
# A non-default port gets its own data directory, socket, pid and log files, so it can
# run beside the default instance.
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export LC_ALL=C

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
redis_port="${REDIS_PORT:-6379}"
mysql_port="${MYSQL_PORT:-3306}"
timeout_s="${SERVICES_TIMEOUT:-60}"

say() { printf '%s\n' "$*"; }
die() { printf 'services.sh: %s\n' "$*" >&2; exit 1; }

[[ "$redis_port" =~ ^[0-9]+$ ]] || die "REDIS_PORT must be a number, got '$redis_port'"
[[ "$mysql_port" =~ ^[0-9]+$ ]] || die "MYSQL_PORT must be a number, got '$mysql_port'"

# Privileged steps (apt, starting daemons, MariaDB root over the unix socket) need
# root; use sudo when run as another user.
if ((EUID == 0)); then
	as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
	as_root() { sudo -n -- "$@" || sudo -- "$@"; }
else
	as_root() { die "need root (or sudo) to run: $*"; }
fi

# Serialise concurrent runs (two `make test` at once would race on apt and on starting
# the daemons).
lock="${TMPDIR:-/tmp}/flashsale-services.lock"
if command -v flock >/dev/null 2>&1 && { exec 9>>"$lock"; } 2>/dev/null; then
	flock -w 600 9 || die "could not lock $lock"
fi

# Paths: the default ports use Debian's usual locations.
if [[ "$redis_port" == 6379 ]]; then
	redis_dir=/var/lib/redis
	redis_log=/var/log/redis/redis-server.log
	redis_pid=/run/redis/redis-server.pid
else
	redis_dir="/var/lib/redis-$redis_port"
	redis_log="/var/log/redis/redis-server-$redis_port.log"
	redis_pid="/run/redis/redis-server-$redis_port.pid"
fi
if [[ "$mysql_port" == 3306 ]]; then
	mysql_datadir=/var/lib/mysql
	mysql_sock=/run/mysqld/mysqld.sock
	mysql_pid=/run/mysqld/mysqld.pid
	mysql_log=/var/log/mysql/error.log
else
	mysql_datadir="/var/lib/mysql-$mysql_port"
	mysql_sock="/run/mysqld/mysqld-$mysql_port.sock"
	mysql_pid="/run/mysqld/mysqld-$mysql_port.pid"
	mysql_log="/var/log/mysql/error-$mysql_port.log"
fi
# start-stop-daemon's own records of the processes it launched (the servers write and
# remove their own pid files, as their users).
redis_launch_pid="/run/redis/launch-$redis_port.pid"
mysql_launch_pid="/run/mysqld/launch-$mysql_port.pid"

# ---------------------------------------------------------------------------
# 1. Packages
# ---------------------------------------------------------------------------
need=()
have() { command -v "$1" >/dev/null 2>&1; }
if ! have redis-server; then need+=(redis-server); fi
if ! have redis-cli || ! have redis-benchmark; then need+=(redis-tools); fi
if ! have mariadbd || ! have mariadb-install-db || ! have mariadb-admin; then need+=(mariadb-server); fi
if ! have mariadb; then need+=(mariadb-client); fi
if [[ "${SKIP_CHROMIUM:-}" != 1 ]] && ! have chromium; then need+=(chromium); fi
# `go test -race` needs cgo, so a C compiler and the C library headers.
if ! have gcc; then need+=(gcc); fi
if [[ ! -e /usr/include/stdlib.h ]]; then need+=(libc6-dev); fi
# promtool checks deploy/prometheus/alerts.yml and a node's /metrics in `make
# test`. Debian ships it only inside the prometheus package; its recommends
# (node-exporter, smartmontools) are daemons we do not want, so they are skipped.
need_norec=()
if ! have promtool; then need_norec+=(prometheus); fi

all_needed=("${need[@]}" "${need_norec[@]}")
if ((${#all_needed[@]})); then
	have apt-get || die "missing ${all_needed[*]} and no apt-get to install them"
	say "apt: installing ${all_needed[*]}"
	apt_log="${TMPDIR:-/tmp}/flashsale-apt.log"
	apt_opts=(-y -q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
	apt() { as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" "$@" >>"$apt_log" 2>&1 9>&-; }
	apt_all() {
		: >"$apt_log"
		apt update || return
		if ((${#need[@]})); then apt install "${need[@]}" || return; fi
		if ((${#need_norec[@]})); then apt install --no-install-recommends "${need_norec[@]}" || return; fi
	}
	if ! apt_all; then
		tail -n 30 "$apt_log" >&2 || true
		die "apt-get failed (full log: $apt_log)"
	fi
	hash -r
	for c in redis-server redis-cli mariadbd mariadb-install-db mariadb-admin mariadb promtool; do
		have "$c" || die "$c still missing after apt-get install (log: $apt_log)"
	done
	say "apt: installed ${all_needed[*]}"
fi

# wait_for NAME LOG ALIVE CHECK: poll CHECK every 0.2 s until it succeeds. Give up at
# the deadline, or sooner when ALIVE (is the process still there?) has failed for a
# second in a row, and show the end of LOG.
wait_for() {
	local name="$1" log="$2" alive="$3" check="$4"
	local deadline=$((SECONDS + timeout_s)) dead=0 why
	until "$check" >/dev/null 2>&1; do
		why=""
		if "$alive" >/dev/null 2>&1; then dead=0; else dead=$((dead + 1)); fi
		((dead < 5)) || why="exited before answering"
		((SECONDS < deadline)) || why="did not answer within ${timeout_s}s"
		if [[ -n "$why" ]]; then
			printf 'services.sh: %s %s; last lines of %s:\n' "$name" "$why" "$log" >&2
			as_root tail -n 30 "$log" >&2 || true
			exit 1
		fi
		sleep 0.2
	done
}

# ---------------------------------------------------------------------------
# 2. Redis
# ---------------------------------------------------------------------------
redis_cli() { redis-cli -h 127.0.0.1 -p "$redis_port" "$@"; }
redis_up() { [[ "$(redis_cli ping 2>/dev/null)" == PONG ]]; }

if redis_up; then
	say "redis: already up on 127.0.0.1:$redis_port"
else
	conf="$script_dir/redis.conf"
	[[ -r "$conf" ]] || die "missing $conf"
	redis_bin="$(command -v redis-server)"
	redis_user=root
	if id redis >/dev/null 2>&1; then redis_user=redis; fi
	as_root mkdir -p "$redis_dir" "$(dirname "$redis_log")" "$(dirname "$redis_pid")"
	as_root chown "$redis_user" "$redis_dir" "$(dirname "$redis_log")" "$(dirname "$redis_pid")"
	# Redis runs as the redis user, which may not be able to read this checkout: give
	# it a copy of the configuration next to its pid file. start-stop-daemon runs it
	# in the background (closing inherited descriptors) rather than redis.conf's
	# daemonize, and raises the open-files limit for maxclients 10000 (needs ~10032).
	redis_conf="$(dirname "$redis_pid")/flashsale-$redis_port.conf"
	as_root install -m 0644 "$conf" "$redis_conf"
	# shellcheck disable=SC2016 # expanded by the inner bash
	as_root bash -c 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; exec "$@"' start \
		start-stop-daemon --start --quiet --oknodo --background --chuid "$redis_user" \
		--make-pidfile --pidfile "$redis_launch_pid" --exec "$redis_bin" -- "$redis_conf" \
		--daemonize no --port "$redis_port" --dir "$redis_dir" --logfile "$redis_log" \
		--pidfile "$redis_pid" 9>&-
	redis_alive() { as_root start-stop-daemon --status --pidfile "$redis_launch_pid" --exec "$redis_bin"; }
	wait_for redis "$redis_log" redis_alive redis_up
	say "redis: started on 127.0.0.1:$redis_port (AOF in $redis_dir)"
fi

# A Redis started by something else (e.g. Debian's init script) may run without AOF;
# flashsale's durability story assumes appendonly with appendfsync everysec.
if [[ "$(redis_cli config get appendonly 2>/dev/null | sed -n 2p)" != yes ]]; then
	redis_cli config set appendfsync everysec >/dev/null
	redis_cli config set appendonly yes >/dev/null
	say "redis: turned on appendonly (appendfsync everysec)"
fi

# ---------------------------------------------------------------------------
# 3. MariaDB
# ---------------------------------------------------------------------------
# mariadb-admin ping exits 0 whenever the server answers (even "access denied").
mysql_up() { as_root mariadb-admin --no-defaults --socket="$mysql_sock" --connect-timeout=2 ping; }
mysql_root() { as_root mariadb --no-defaults --socket="$mysql_sock" -uroot; } # SQL on stdin

if mysql_up >/dev/null 2>&1; then
	mysql_state="already up"
else
	mariadbd_bin="$(command -v mariadbd)"
	as_root mkdir -p /run/mysqld "$(dirname "$mysql_log")"
	as_root chown mysql:mysql /run/mysqld
	as_root chown mysql:adm "$(dirname "$mysql_log")" 2>/dev/null || as_root chown mysql "$(dirname "$mysql_log")"
	if [[ ! -d "$mysql_datadir/mysql" ]]; then
		as_root mkdir -p "$mysql_datadir"
		as_root chown mysql:mysql "$mysql_datadir"
		init_log="${TMPDIR:-/tmp}/flashsale-mariadb-install-db.log"
		if ! as_root mariadb-install-db --user=mysql --datadir="$mysql_datadir" --skip-test-db >"$init_log" 2>&1; then
			tail -n 30 "$init_log" >&2 || true
			die "mariadb-install-db failed (log: $init_log)"
		fi
		say "mariadb: initialised $mysql_datadir"
	fi
	# Durable settings stay at their defaults (innodb_flush_log_at_trx_commit=1).
	as_root start-stop-daemon --start --quiet --oknodo --background \
		--make-pidfile --pidfile "$mysql_launch_pid" --exec "$mariadbd_bin" -- \
		--user=mysql --datadir="$mysql_datadir" --socket="$mysql_sock" \
		--pid-file="$mysql_pid" --log-error="$mysql_log" \
		--bind-address=127.0.0.1 --port="$mysql_port" --max-connections=1000 9>&-
	mysql_alive() { as_root start-stop-daemon --status --pidfile "$mysql_launch_pid" --exec "$mariadbd_bin"; }
	wait_for mariadb "$mysql_log" mysql_alive mysql_up
	mysql_state="started"
fi

# The application's user and database. Checked by logging in as that user over TCP
# (the way flashsale connects) with global CREATE, which the tests need.
flashsale_ok() {
	MYSQL_PWD=flashsale mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"$mysql_port" \
		-uflashsale -D flashsale -N -B \
		-e "SELECT 1 FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE='CREATE' LIMIT 1" \
		2>/dev/null | grep -qx 1 &&
		# ... and all three accounts exist (checked as root over the socket).
		[[ "$(as_root mariadb --no-defaults --socket="$mysql_sock" -uroot -N -B -e \
			"SELECT COUNT(*) FROM mysql.user WHERE User='flashsale' AND Host IN ('127.0.0.1','localhost','%')" \
			2>/dev/null)" == 3 ]]
}
if flashsale_ok; then
	say "mariadb: $mysql_state on 127.0.0.1:$mysql_port (user flashsale ok)"
else
	say "mariadb: $mysql_state on 127.0.0.1:$mysql_port"
	# The grant is global ON *.* on purpose: the tests create and drop their own
	# databases. This is a local development/test database; do not copy this grant to
	# a production server.
	mysql_root <<'SQL'
CREATE USER IF NOT EXISTS 'flashsale'@'127.0.0.1' IDENTIFIED BY 'flashsale';
CREATE USER IF NOT EXISTS 'flashsale'@'localhost' IDENTIFIED BY 'flashsale';
CREATE USER IF NOT EXISTS 'flashsale'@'%' IDENTIFIED BY 'flashsale';
ALTER USER 'flashsale'@'127.0.0.1' IDENTIFIED BY 'flashsale';
ALTER USER 'flashsale'@'localhost' IDENTIFIED BY 'flashsale';
ALTER USER 'flashsale'@'%' IDENTIFIED BY 'flashsale';
GRANT ALL PRIVILEGES ON *.* TO 'flashsale'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO 'flashsale'@'localhost';
GRANT ALL PRIVILEGES ON *.* TO 'flashsale'@'%';
CREATE DATABASE IF NOT EXISTS flashsale CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
SQL
	flashsale_ok || die "user flashsale still cannot log in to 127.0.0.1:$mysql_port/flashsale"
	say "mariadb: user flashsale and database flashsale ready"
fi

# ---------------------------------------------------------------------------
# 4. A local Redis Cluster (the --redis-cluster tests), unless SKIP_REDIS_CLUSTER=1
# ---------------------------------------------------------------------------
if [[ "${SKIP_REDIS_CLUSTER:-}" != 1 ]]; then
	"$script_dir/redis-cluster.sh" 9>&-
fi
