#!/bin/bash
# joinratio.sh ROUNDS SECS: joins/s and CPU per join of a node with the
# rate limits off (8095) and one with the defaults (8096), both --dev on the
# same stores, against a hello-world server (8099): wrk -t1 -c64 with
# wrk/join.lua, fresh tokens per run, the order alternating per round.
# RURL=redis://127.0.0.1:PORT/0 puts both nodes on a Redis of their own (its
# INFO cpu then counts only them); BIN=path runs another build. Run from the
# repository root after make build; loopback only, bounded by ROUNDS x SECS.
cd "$(dirname "$0")/../../.."
R=${1:-3}; S=${2:-15}
D=/tmp/fsbench; mkdir -p $D
P=bench$RANDOM; SALE=bj$RANDOM
pkill -f "data-dir /tmp/fsbench" || true
pkill -f "loadgen hello" || true
RURL=${RURL:-redis://127.0.0.1:6379/0}; RPORT=$(echo $RURL | sed -E "s#.*:([0-9]+)/.*#\1#")
common="serve --redis-url $RURL --dev --data-dir $D --redis-key-prefix $P --trusted-proxies 127.0.0.1/32 --sample-sale=false"
${BIN:-./bin/flashsale} $common --listen 127.0.0.1:8095 --ip-rate 0 --user-rate 0 --debug-listen 127.0.0.1:6095 >/tmp/n8095.log 2>&1 &
${BIN:-./bin/flashsale} $common --listen 127.0.0.1:8096 --debug-listen 127.0.0.1:6096 >/tmp/n8096.log 2>&1 &
./bin/loadgen hello --listen 127.0.0.1:8099 >/tmp/hello.log 2>&1 &
for p in 8095 8096 8099; do for i in $(seq 50); do curl -s -o /dev/null 127.0.0.1:$p/ && break; sleep 0.2; done; done
for i in $(seq 50); do curl -sf 127.0.0.1:8095/readyz >/dev/null && curl -sf 127.0.0.1:8096/readyz >/dev/null && break; sleep 0.2; done
curl -s -XPOST -H "Authorization: Bearer $(cat $D/admin-token)" http://127.0.0.1:8095/api/v1/admin/sales \
  -d '{"id":"'$SALE'","name":"Load","price_cents":100,"currency":"EUR","stock":10000000,"admission_rate":1,"max_active":10}' >/dev/null
N=$((S*25000))
off=0
for r in $(seq $R); do
  ports="8099 8095 8096"; [ $((r%2)) = 0 ] && ports="8099 8096 8095"
  for p in $ports; do
    ./bin/loadgen tokens -n $N --data-dir $D --user-prefix r$r-$p-$RANDOM- > /tmp/tok.txt
    if [ $p = 8099 ]; then url=http://127.0.0.1:8099/; else url=http://127.0.0.1:$p/api/v1/sales/$SALE/join; fi
    pid=$(pgrep -f "listen 127.0.0.1:$p" | head -1)
    c0=$(awk '{print $14+$15}' /proc/$pid/stat); r0=$(redis-cli -p $RPORT info cpu | awk -F: '/used_cpu_(sys|user):/{s+=$2} END{printf "%.3f", s}')
    res=$(/usr/bin/time -f "wrkcpu %U %S" -o /tmp/wrkcpu wrk -t1 -c64 -d${S}s -s cmd/loadgen/wrk/join.lua $url -- /tmp/tok.txt $off | tail -1)
    wc=$(awk '{print $2+$3}' /tmp/wrkcpu)
    c1=$(awk '{print $14+$15}' /proc/$pid/stat); r1=$(redis-cli -p $RPORT info cpu | awk -F: '/used_cpu_(sys|user):/{s+=$2} END{printf "%.3f", s}')
    rate=$(echo "$res" | awk '{print $2}')
    cpu=$(python3 -c "n=$rate*$S; print('node %.0f us/req, redis %.0f us/req, wrk %.0f us/req, total %.0f' % (($c1-$c0)*1e4/n, ($r1-$r0)*1e6/n, $wc*1e6/n, ($c1-$c0)*1e4/n+($r1-$r0)*1e6/n+$wc*1e6/n))")
    off=$((off+N))
    echo "round $r port $p: $res $cpu (load $(cut -d' ' -f1 /proc/loadavg))"
  done
done
pkill -f "data-dir /tmp/fsbench" || true
pkill -f "loadgen hello" || true
redis-cli -p $RPORT --scan --pattern "$P:*" | xargs -r -n 1000 redis-cli -p $RPORT unlink >/dev/null
