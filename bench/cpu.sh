#!/usr/bin/env bash
# CPU time per forwarded request, natively: smartlb pinned to cpu1, wrk and the two nginx
# backends to cpu0, as peers.sh places them.
#
#   bench/cpu.sh BINARY [PATH] [DURATION] [ROUNDS]
#
# Prints, per round, req/s and smartlb's CPU µs per request (utime+stime / requests).
# With STRACE=1 it also counts smartlb's system calls per request over one extra round.
set -euo pipefail
BIN="$(realpath "$1")"; P="${2:-/}"; D="${3:-10}"; R="${4:-3}"
HERE="$(cd "$(dirname "$0")" && pwd)"
W="$(mktemp -d /tmp/cpu.XXXXXX)"; chmod 755 "$W"
declare -a PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W/www" "$W/tmp"; chmod 777 "$W/tmp"
head -c 16384 /dev/zero | tr '\0' 'x' > "$W/www/16k"; chmod 644 "$W/www/16k"
for n in 1 2; do
  cat > "$W/be$n.conf" <<NGX
worker_processes 1; daemon off; master_process on; pid $W/be$n.pid; error_log $W/be$n.err warn;
events { worker_connections 4096; }
http { access_log off; default_type application/octet-stream; keepalive_requests 100000000;
  client_body_temp_path $W/tmp/cb$n; proxy_temp_path $W/tmp/px$n; fastcgi_temp_path $W/tmp/fc$n;
  uwsgi_temp_path $W/tmp/uw$n; scgi_temp_path $W/tmp/sc$n;
  server { listen 127.0.0.1:1828$n backlog=4096; add_header X-Backend be$n always;
    location = /16k { root $W/www; } location / { return 200 "ok"; } } }
NGX
  taskset -c 0 nginx -p "$W" -c "$W/be$n.conf" -e "$W/be$n.err" & PIDS+=($!)
done
sed -e 's/18090/18290/; s/18099/18299/; s/18081/18281/; s/18082/18282/' "$HERE/peers.toml" > "$W/smartlb.toml"
taskset -c 1 "$BIN" run -c "$W/smartlb.toml" > "$W/smartlb.log" 2>&1 & SL=$!; PIDS+=($SL)
for _ in $(seq 1 100); do curl -s -o /dev/null --max-time 1 http://127.0.0.1:18290/ && break; sleep 0.1; done
ticks() { sed 's/^.*) //' "/proc/$SL/stat" | awk '{print $12 + $13}'; }
HZ=$(getconf CLK_TCK)
taskset -c 0 wrk -t1 -c64 -d2s "http://127.0.0.1:18290$P" > /dev/null
for r in $(seq 1 "$R"); do
  c0=$(ticks)
  out="$(taskset -c 0 wrk -t1 -c64 -d"${D}s" "http://127.0.0.1:18290$P")"
  c1=$(ticks)
  n=$(echo "$out" | awk '/requests in/{print $1}')
  rps=$(echo "$out" | awk '/^Requests\/sec/{print $2}')
  awk -v n="$n" -v c="$((c1 - c0))" -v hz="$HZ" -v rps="$rps" -v d="$D" \
    'BEGIN{printf "round: %s req/s, cpu %.0f%%, %.2f us/request\n", rps, c/hz/d*100, c/hz/n*1e6}'
done
if [[ "${STRACE:-0}" == 1 ]]; then
  strace -c -f -p "$SL" -o "$W/strace.txt" & ST=$!
  sleep 1
  out="$(taskset -c 0 wrk -t1 -c64 -d5s "http://127.0.0.1:18290$P")"
  kill -INT "$ST"; wait "$ST" 2>/dev/null || true
  n=$(echo "$out" | awk '/requests in/{print $1}')
  awk -v n="$n" 'NR>2 && $NF!="total" && $4 ~ /^[0-9]+$/ {printf "  %-16s %.2f/request\n", $NF, $4/n} /total/{printf "  total %.2f syscalls/request\n", $3/n}' "$W/strace.txt"
fi
