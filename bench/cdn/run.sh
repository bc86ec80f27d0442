#!/usr/bin/env bash
# The CDN edge (`lab-agent cdn`) against NGINX's proxy_cache, side by side in one run, both in
# front of the same origin (`lab-agent files`) holding the same objects (1 KB, 100 KB, 1 MB),
# both warmed so every request is a hit, both driven by the same client (wrk, 2 threads,
# CONNECTIONS connections, DURATION s per object and server, ROUNDS rounds alternating):
# req/s and p99 of each, and the ratio edge/NGINX (target >= 1.0).
# Then the eviction policies' hit ratios on a Zipf(0.8) trace with the cache at 10 % of the
# objects (LRU vs S3-FIFO; target S3-FIFO >= LRU + 5 points).
# Only loopback. As root (installs nginx-light and wrk with apt-get when missing).
# Usage: bench/cdn/run.sh   env: CONNECTIONS=50 DURATION=10 ROUNDS=2 BENCH_NO_BUILD=1
set -euo pipefail
cd "$(dirname "$0")/../.."
CONNECTIONS="${CONNECTIONS:-50}"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-2}"
ORIGIN=18170 EDGE=18190 ADMIN=18191 PROXY=18180
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

need() { [ -x "$1" ] || { echo "installing $2"; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" >/dev/null; }; }
need /usr/sbin/nginx nginx-light
need /usr/bin/wrk wrk
need /usr/bin/python3 python3-minimal
if [ -d /run/systemd/system ]; then systemctl disable --now --quiet nginx 2>/dev/null || true; fi

if [ -z "${BENCH_NO_BUILD:-}" ]; then
  echo "building lab-agent (release)"
  cargo build --release -q -p lab-agent
fi
AGENT="${CARGO_TARGET_DIR:-target}/release/lab-agent"
[ -x "$AGENT" ] || { echo "no $AGENT: build it with cargo build --release -p lab-agent"; exit 1; }

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on port $1"; exit 1; }

# The origin and its objects.
cat > "$work/files.json" <<JSON
{"board":"origin","bind":"127.0.0.1","port":$ORIGIN,"buckets":[{"name":"bench","max_object_bytes":8388608}]}
JSON
"$AGENT" files --config "$work/files.json" --data "$work/data" 2>"$work/files.log" & pids+=($!)
wait_port $ORIGIN
python3 - "$ORIGIN" <<'PY'
import http.client, sys
port = int(sys.argv[1])
for name, size in [("1k", 1024), ("100k", 100 * 1024), ("1m", 1024 * 1024)]:
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("PUT", f"/bench/{name}.bin", body=bytes(i % 251 for i in range(size)),
              headers={"Content-Type": "application/octet-stream"})
    r = c.getresponse()
    assert r.status == 201, (name, r.status, r.read())
PY

# The edge: LRU, 256 MiB, a 10 min TTL (every request of the run is a hit).
cat > "$work/cdn.json" <<JSON
{"board":"edge","bind":"127.0.0.1","port":$EDGE,"admin_port":$ADMIN,"memory_bytes":268435456,
 "policy":"lru","default_ttl_secs":600,"stale_if_error_secs":60,"max_object_bytes":8388608,
 "origins":[{"bucket":"bench","board":"origin","host":"127.0.0.1","port":$ORIGIN}],"fallback":null}
JSON
"$AGENT" cdn --config "$work/cdn.json" 2>"$work/cdn.log" & pids+=($!)
wait_port $EDGE

# NGINX with proxy_cache, the same job: 2 workers (the edge's runtime has one per core),
# 256 MiB of cache, 10 min validity, one fetch per key at a time (proxy_cache_lock).
mkdir -p "$work/tmp" "$work/cache"
# NGINX's workers run as nobody: they must reach the work dir and write their cache.
chmod 755 "$work"; chown nobody "$work/tmp" "$work/cache"
cat > "$work/nginx.conf" <<CONF
daemon off;
worker_processes $(nproc);
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  proxy_cache_path $work/cache levels=1:2 keys_zone=edge:16m max_size=256m inactive=10m;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 16; }
  server {
    listen 127.0.0.1:$PROXY;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache edge;
      proxy_cache_valid 200 10m;
      proxy_cache_lock on;
      add_header X-Cache \$upstream_cache_status;
    }
  }
}
CONF
/usr/sbin/nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log" & pids+=($!)
wait_port $PROXY

# Warm both; the second look must be a hit on each.
python3 - "$EDGE" "$PROXY" <<'PY'
import http.client, sys
for port in map(int, sys.argv[1:]):
    for name in ["1k", "100k", "1m"]:
        for attempt in range(2):
            c = http.client.HTTPConnection("127.0.0.1", port)
            c.request("GET", f"/bench/{name}.bin")
            r = c.getresponse(); r.read()
            assert r.status == 200, (port, name, r.status)
        assert r.getheader("X-Cache") == "HIT", (port, name, r.getheader("X-Cache"))
PY

wrk_ms() {
  awk -v p="$2" '$1==p {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}' "$1"
}
run() { # port object round -> "req/s p99"
  local f="$work/wrk-$1-$2-$3.txt"
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$1/bench/$2.bin" > "$f"
  if grep -q 'Non-2xx\|Socket errors' "$f"; then echo "errors:"; cat "$f"; exit 1; fi
  echo "$(awk '/^Requests\/sec:/ {print $2}' "$f") $(wrk_ms "$f" 99%)"
}

echo "all hits; $CONNECTIONS connections, ${DURATION}s per object and server, $ROUNDS round(s); $(nproc) cores"
printf '%-6s %14s %10s %14s %10s %9s\n' object "edge req/s" "p99 ms" "nginx req/s" "p99 ms" "edge/nginx"
for obj in 1k 100k 1m; do
  e_sum=0; n_sum=0; e_p99=0; n_p99=0
  for r in $(seq "$ROUNDS"); do
    read -r e ep <<<"$(run $EDGE $obj "$r")"
    read -r n np <<<"$(run $PROXY $obj "$r")"
    e_sum=$(python3 -c "print($e_sum + $e)"); n_sum=$(python3 -c "print($n_sum + $n)")
    e_p99=$(python3 -c "print(max($e_p99, $ep))"); n_p99=$(python3 -c "print(max($n_p99, $np))")
  done
  python3 -c "
e, n = $e_sum / $ROUNDS, $n_sum / $ROUNDS
print(f'{\"$obj\":<6} {e:>14.0f} {$e_p99:>10.2f} {n:>14.0f} {$n_p99:>10.2f} {e / n:>8.2f}x')"
done
echo "(req/s: mean of the rounds; p99: the worst round's; target edge/nginx >= 1.0)"

echo
echo "eviction policies (lab-agent's cache, the seeded trace of its unit test):"
cargo test -q -p lab-agent --lib s3_fifo_beats_lru -- --nocapture 2>/dev/null | grep 'Zipf'
