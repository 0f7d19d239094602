#!/usr/bin/env bash
# Instructions per forwarded request, from callgrind: a deterministic measure of the
# forwarding path that the shared, noisy 2-core box cannot blur.
#
#   bench/callgrind.sh BINARY [PATH] [REQUESTS] [CONNS]
#
# BINARY is a release build of smartlb (`target/release/smartlb`). Two nginx backends
# (ports 18181/18182, as peers.sh configures them) and smartlb (port 18190, one worker,
# round-robin, no access log: bench/peers.toml with other ports) are started; after
# 2000 warm-up requests, instrumentation is switched on for REQUESTS requests (default
# 20000) over CONNS keep-alive connections (default 16). Prints Ir per request and leaves
# the profile in $OUT (default /tmp/callgrind.<pid>).
set -euo pipefail
BIN="$(realpath "$1")"; P="${2:-/}"; N="${3:-20000}"; C="${4:-16}"
HERE="$(cd "$(dirname "$0")" && pwd)"
W="$(mktemp -d /tmp/cg.XXXXXX)"; chmod 755 "$W"
OUT="${OUT:-/tmp/callgrind.$$}"
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
  server { listen 127.0.0.1:1818$n; add_header X-Backend be$n always;
    location = /16k { root $W/www; } location / { return 200 "ok"; } } }
NGX
  nginx -p "$W" -c "$W/be$n.conf" -e "$W/be$n.err" & PIDS+=($!)
done
sed -e 's/18090/18190/; s/18099/18199/; s/18081/18181/; s/18082/18182/' "$HERE/peers.toml" > "$W/smartlb.toml"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT" \
  "$BIN" run -c "$W/smartlb.toml" > "$W/smartlb.log" 2>&1 & VG=$!; PIDS+=($VG)
for _ in $(seq 1 300); do curl -s -o /dev/null --max-time 1 http://127.0.0.1:18190/ && break; sleep 0.2; done
python3 "$HERE/load.py" 18190 "$P" 2000 "$C" >/dev/null
callgrind_control -i on "$VG" >/dev/null
python3 "$HERE/load.py" 18190 "$P" "$N" "$C"
callgrind_control -i off "$VG" >/dev/null
callgrind_control -d "$VG" >/dev/null
kill -INT "$VG"; wait "$VG" 2>/dev/null || true
F="$OUT.1"
IR="$(callgrind_annotate "$F" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(/,/,"",$1); print $1}')"
echo "profile: $F"
awk -v ir="$IR" -v n="$N" 'BEGIN{printf "Ir total %d, per request %.0f\n", ir, ir/n}'
