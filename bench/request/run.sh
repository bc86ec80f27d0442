#!/usr/bin/env bash
# The request path on a virtual cluster (default: the 11-board default cluster), side by side
# in one run, every figure from `lab load` (closed loop, CONNECTIONS connections, DURATION s):
#  1. through the LB: cached reads (Zipf 1.0 over KEYS posts), the same reads with
#     `Cache-Control: no-cache` (every read reaches a replica), writes only;
#  2. the cache hit ratio of the cached run after warm-up (its second half, from the timeline;
#     target >= 90 %);
#  3. the cached reads straight at one app board (no LB): flat out that compares one app with
#     all of them behind the LB (capacity); at a fixed RATE both (open loop) the p50/p99
#     difference is the LB's own cost (one more hop);
#  4. the app's RSS on every app board, and the static aarch64 agent's size with the app in it
#     (budget 12 MB).
# Traffic goes only to the cluster's own virtual boards. As root. The cluster is brought up
# with `lab up` (a no-op when it runs) and left running (`lab down` removes it).
# Usage: bench/request/run.sh [INVENTORY]   env: CONNECTIONS=32 DURATION=15 KEYS=1000 RATE=1000
#        BENCH_NO_BUILD=1 uses target/release/lab as it is.
set -euo pipefail
cd "$(dirname "$0")/../.."
INV="${1:-inventory/virtual.toml}"
CONNECTIONS="${CONNECTIONS:-32}"
RATE="${RATE:-1000}"
DURATION="${DURATION:-15}"
KEYS="${KEYS:-1000}"
need() { command -v "$1" >/dev/null || { echo "installing $2 (for $1)"; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" >/dev/null; }; }
need jq jq
need bc bc
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release -q -p lab
LAB=target/release/lab
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== lab up -i $INV"
"$LAB" up -i "$INV" >"$work/up.txt" || { cat "$work/up.txt"; exit 1; }
addr_of() { awk -v b="$1" -F'"' '/^name *=/{n=$2} /^address *=/{ if (n==b) print $2 }' "$INV"; }
board_with() { # first board whose roles line names $1
  awk -v r="\"$1\"" -F'"' '/^name *=/{n=$2} /^roles *=/{ if (index($0, r) && !found) { print n; found=1 } }' "$INV"
}
LB_BOARD=$(board_with lb); APP_BOARD=$(board_with app)
LB="http://$(addr_of "$LB_BOARD")/"
APP="http://$(addr_of "$APP_BOARD"):8080/"
echo "   LB $LB ($LB_BOARD), one app $APP ($APP_BOARD)"

run() { # name, posts to seed, extra args...
  local name=$1 keys=$2; shift 2
  echo "== $name"
  "$LAB" load -i "$INV" --duration "${DURATION}s" -c "$CONNECTIONS" --users 20 --keys "$keys" \
    --json --out "$work/$name" "$@" >"$work/$name.json" 2>"$work/$name.err" || {
      echo "lab load ($name) failed:"; tail -n 20 "$work/$name.err"; exit 1; }
  jq -r '"   \(.ok) ok, \(.failed) failed, \(.ok_rate|floor) req/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms"' "$work/$name.json"
}
run cached "$KEYS" --url "$LB" --read-ratio 1 --zipf 1.0
run uncached "$KEYS" --url "$LB" --read-ratio 1 --zipf 1.0 --no-cache
run writes 20 --url "$LB" --read-ratio 0
run direct "$KEYS" --url "$APP" --read-ratio 1 --zipf 1.0
run lb_rate "$KEYS" --url "$LB" --read-ratio 1 --zipf 1.0 --rate "$RATE"
run app_rate "$KEYS" --url "$APP" --read-ratio 1 --zipf 1.0 --rate "$RATE"

# Hit ratio after warm-up: the cached run's second half.
warm_hit=$(jq -r --argjson d "$DURATION" '[.[] | select(.t >= ($d/2))] |
  ((map(.hits)|add) as $h | (map(.misses)|add) as $m | if ($h+$m) > 0 then $h*100/($h+$m) else 0 end)' \
  "$work/cached/timeline.json")

echo "== the app on its boards (RSS)"
boards=" $(awk -F'"' '/^name *=/{print $2}' "$INV" | tr '\n' ' ') "
worst_rss=0
for p in $(pgrep -f 'lab-agent app --config' || true); do
  host=$(nsenter -t "$p" -u hostname 2>/dev/null || echo "?")
  [[ "$boards" == *" $host "* ]] || continue
  r=$(awk '/VmRSS/{print $2}' "/proc/$p/status")
  printf '   %-10s pid %-7s rss %6.1f MB\n' "$host" "$p" "$(echo "$r / 1024" | bc -l)"
  if (( r > worst_rss )); then worst_rss=$r; fi
done

echo "== the aarch64 agent (cross/build-agents.sh rebuilds it when the sources changed)"
cross/build-agents.sh --target aarch64-unknown-linux-musl >/dev/null
size=$(stat -c %s "${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-musl/release/lab-agent")

f() { jq -r "$1" "$work/$2.json"; }
echo
printf '%-44s %10s %10s %10s %10s\n' "through the LB ($CONNECTIONS connections)" "req/s" "p50 ms" "p99 ms" "hit %"
for n in cached uncached writes direct lb_rate app_rate; do
  case $n in
    uncached) label="reads with no-cache (database)" ;;
    direct) label="cached, straight at $APP_BOARD (no LB)" ;;
    lb_rate) label="cached at $RATE/s through the LB" ;;
    app_rate) label="cached at $RATE/s straight at $APP_BOARD" ;;
    *) label=$n ;;
  esac
  hit=$(f '.cache.hit_ratio // 0 | . * 100 | floor' "$n")
  # no-cache single reads say BYPASS and are not counted; the rest is the lists' share.
  [ "$n" = uncached ] && hit="bypass"
  [ "$n" = writes ] && hit="-"
  printf '%-44s %10s %10s %10s %10s\n' "$label" "$(f '.ok_rate|floor' "$n")" \
    "$(f '.latency_ms.p50' "$n")" "$(f '.latency_ms.p99' "$n")" "$hit"
done
echo
printf '%-52s %12s %14s\n' "figure" "this run" "target/budget"
printf '%-52s %11.1f%% %14s\n' "hit ratio, Zipf(1.0) reads after warm-up" "$warm_hit" ">= 90 %"
printf '%-52s %11.2fx %14s\n' "cached reads: no-cache / cached req/s" \
  "$(echo "$(f .ok_rate uncached) / $(f .ok_rate cached)" | bc -l)" "-"
printf '%-52s %11.2fx %14s\n' "flat out: LB over all apps / one app req/s" \
  "$(echo "$(f .ok_rate cached) / $(f .ok_rate direct)" | bc -l)" "-"
printf '%-52s %11.2fx %14s\n' "at $RATE/s: p50 through the LB / straight at one app" \
  "$(echo "$(f .latency_ms.p50 lb_rate) / $(f .latency_ms.p50 app_rate)" | bc -l)" "-"
printf '%-52s %11.2fx %14s\n' "at $RATE/s: p99 through the LB / straight at one app" \
  "$(echo "$(f .latency_ms.p99 lb_rate) / $(f .latency_ms.p99 app_rate)" | bc -l)" "-"
printf '%-52s %10.1f MB %14s\n' "app RSS (largest board)" "$(echo "$worst_rss / 1024" | bc -l)" "-"
printf '%-52s %10.2f MB %14s\n' "aarch64 static agent (app inside)" "$(echo "$size / 1000000" | bc -l)" "12 MB"
failed=$(jq -s 'map(.failed) | add' "$work"/*.json)
echo "failed requests over all runs: $failed"
