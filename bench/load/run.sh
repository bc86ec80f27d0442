#!/usr/bin/env bash
# `lab load` against wrk on one NGINX static page on loopback, side by side in one run:
#  1. flat out (closed loop), the same connection count, DURATION each, ROUNDS times
#     alternating: req/s of each and the ratio lab/wrk (target >= 0.8);
#  2. lab load at a fixed rate (open loop, RATE req/s): its p50/p99, next to wrk's latency
#     figures from step 1 (wrk has no fixed-rate mode: its latency is a closed loop's).
# Only loopback (127.0.0.1:PORT). As root (installs nginx-light and wrk with apt-get when missing).
# Usage: bench/load/run.sh   env: CONNECTIONS=50 DURATION=10 ROUNDS=3 RATE=2000 PORT=18080
#        BENCH_NO_BUILD=1 skips `cargo build --release -p lab`.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONNECTIONS="${CONNECTIONS:-50}"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
RATE="${RATE:-2000}"
PORT="${PORT:-18080}"
THREADS=2   # wrk threads; lab's runtime has one worker thread per core (2 here)
work="$(mktemp -d)"
nginx_pid=""
cleanup() {
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

need() { [ -x "$1" ] || { echo "installing $2"; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" >/dev/null; }; }
need /usr/sbin/nginx nginx-light
need /usr/bin/wrk wrk
# Debian starts the nginx service it installs; this bench runs its own.
if [ -d /run/systemd/system ]; then systemctl disable --now --quiet nginx 2>/dev/null || true; fi

if [ -z "${BENCH_NO_BUILD:-}" ]; then
  echo "building lab (release)"
  cargo build --release -q -p lab
fi
LAB="${CARGO_TARGET_DIR:-target}/release/lab"
[ -x "$LAB" ] || { echo "no $LAB: build it with cargo build --release -p lab"; exit 1; }

mkdir -p "$work/www" "$work/tmp"
chmod 755 "$work"   # NGINX's worker runs as nobody and must read the page
printf '<html><body>%s</body></html>\n' "$(head -c 600 /dev/zero | tr '\0' 'x')" > "$work/www/index.html"
cat > "$work/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  server { listen 127.0.0.1:$PORT; root $work/www; location / { } }
}
CONF
/usr/sbin/nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log" & nginx_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
URL="http://127.0.0.1:$PORT/"
echo "target: NGINX $(/usr/sbin/nginx -v 2>&1 | sed 's/.*\///'), 1 worker, ${URL} ($(wc -c < "$work/www/index.html") bytes); $(nproc) cores"

# A field of lab's --json summary (python3 reads it).
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$1" "$2"; }
# wrk's latency percentile line ("50%  312.00us") in milliseconds.
wrk_ms() {
  awk -v p="$2" '$1==p {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}' "$1"
}

echo
echo "1. flat out: $CONNECTIONS connections, ${DURATION}s each, $ROUNDS round(s)"
printf '   %-6s %12s %12s %8s\n' round "wrk req/s" "lab req/s" "lab/wrk"
wrk_sum=0; lab_sum=0
for r in $(seq "$ROUNDS"); do
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$URL" > "$work/wrk-$r.txt"
  wrk_rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk-$r.txt")
  if grep -q 'Non-2xx' "$work/wrk-$r.txt"; then echo "wrk saw errors:"; cat "$work/wrk-$r.txt"; exit 1; fi
  "$LAB" load --url "$URL" --mix static --rate 0 -c "$CONNECTIONS" --duration "${DURATION}s" \
    --out "$work/lab-$r" --json > "$work/lab-$r.json" 2>"$work/lab-$r.err" \
    || { echo "lab load failed (exit $?):"; cat "$work/lab-$r.err"; exit 1; }
  lab_rps=$(field "$work/lab-$r.json" "d['ok_rate']")
  errors=$(field "$work/lab-$r.json" "d['failed']")
  [ "$errors" = 0 ] || echo "   (lab saw $errors failed requests in round $r)"
  printf '   %-6s %12.0f %12.0f %7.2fx\n' "$r" "$wrk_rps" "$lab_rps" "$(echo "$lab_rps / $wrk_rps" | bc -l)"
  wrk_sum=$(echo "$wrk_sum + $wrk_rps" | bc -l); lab_sum=$(echo "$lab_sum + $lab_rps" | bc -l)
done
ratio=$(echo "$lab_sum / $wrk_sum" | bc -l)
printf '   %-6s %12.0f %12.0f %7.2fx   (target >= 0.80x)\n' mean "$(echo "$wrk_sum / $ROUNDS" | bc -l)" "$(echo "$lab_sum / $ROUNDS" | bc -l)" "$ratio"
last="$work/wrk-$ROUNDS.txt"
lab_last="$work/lab-$ROUNDS.json"

echo
echo "2. latency (ms)"
"$LAB" load --url "$URL" --mix static --rate "$RATE" -c "$CONNECTIONS" --duration "${DURATION}s" \
  --out "$work/lab-rate" --json > "$work/lab-rate.json" 2>"$work/lab-rate.err" || true
printf '   %-44s %9s %9s %9s %9s\n' "" p50 p90 p99 max
printf '   %-44s %9s %9s %9s %9s\n' "wrk, flat out, $CONNECTIONS connections" \
  "$(wrk_ms "$last" 50%)" "$(wrk_ms "$last" 90%)" "$(wrk_ms "$last" 99%)" \
  "$(awk '$1=="Latency" && NF>=5 {v=$4; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}' "$last")"
printf '   %-44s %9.3f %9.3f %9.3f %9.3f\n' "lab load, flat out, $CONNECTIONS connections" \
  "$(field "$lab_last" "d['latency_ms']['p50']")" "$(field "$lab_last" "d['latency_ms']['p90']")" \
  "$(field "$lab_last" "d['latency_ms']['p99']")" "$(field "$lab_last" "d['latency_ms']['max']")"
f="$work/lab-rate.json"
printf '   %-44s %9.3f %9.3f %9.3f %9.3f\n' "lab load, $RATE req/s, from the schedule" \
  "$(field "$f" "d['latency_ms']['p50']")" "$(field "$f" "d['latency_ms']['p90']")" \
  "$(field "$f" "d['latency_ms']['p99']")" "$(field "$f" "d['latency_ms']['max']")"
printf '   %-44s %9.3f %9.3f %9.3f %9.3f\n' "lab load, $RATE req/s, from the send" \
  "$(field "$f" "d['service_ms']['p50']")" "$(field "$f" "d['service_ms']['p90']")" \
  "$(field "$f" "d['service_ms']['p99']")" "$(field "$f" "d['service_ms']['max']")"
echo "   lab load at $RATE req/s: achieved $(field "$f" "round(d['achieved_rate'])") req/s, $(field "$f" "d['failed']") failed, shortfall: $(field "$f" "'none' if d['shortfall'] is None else d['shortfall']")"
