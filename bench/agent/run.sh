#!/usr/bin/env bash
# Agent cost at 1 Hz sampling + streaming, side by side with a reference run of Prometheus'
# node_exporter scraped once a second (the usual way to get the same host metrics).
# Only loopback. Usage: bench/agent/run.sh [WINDOW_SECONDS]   (default 60; as root or not)
set -euo pipefail
cd "$(dirname "$0")/../.."
WINDOW="${1:-60}"
PORT_AGENT=17443
PORT_NE=19100
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { echo "installing $2 (for $1)"; apt-get install -y -q "$2" >/dev/null; }; }
need openssl openssl
need curl curl
need bc bc
[ -x /usr/bin/prometheus-node-exporter ] || { echo "installing prometheus-node-exporter (reference run)"; apt-get install -y -q --no-install-recommends prometheus-node-exporter >/dev/null; }

echo "building the agent (release)"
cargo build --release -q -p lab-agent
AGENT=target/release/lab-agent

# A throwaway CA, the agent's serverAuth cert for 127.0.0.1, a clientAuth cert for the reader.
cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
  -days 2 -subj "/CN=bench CA" 2>/dev/null
leaf() { # name usage san
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" \
    -subj "/CN=$1" 2>/dev/null
  printf 'extendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n%s\n' "$2" "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days 2 \
    -extfile "$1.ext" 2>/dev/null
}
leaf agent serverAuth "subjectAltName=IP:127.0.0.1"
leaf client clientAuth ""
cat > agent.toml <<TOML
cluster = "bench"
board = "bench-1"
listen = "127.0.0.1:$PORT_AGENT"
tls_ca = "$work/ca.pem"
tls_cert = "$work/agent.pem"
tls_key = "$work/agent.key"
state_dir = "$work/state"
TOML
cd - >/dev/null

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
measure() { # pid -> "cpu_percent rss_mb"
  local pid=$1 s1 s2 t1 t2 tck
  tck=$(getconf CLK_TCK)
  s1=$(ticks "$pid"); t1=$(date +%s.%N)
  sleep "$WINDOW"
  s2=$(ticks "$pid"); t2=$(date +%s.%N)
  echo "$(echo "scale=3; 100*($s2-$s1)/$tck/($t2-$t1)" | bc) $(echo "scale=1; $(rss_kb "$pid")/1024" | bc)"
}

echo "lab-agent: serve + one NDJSON stream reader, ${WINDOW}s window"
"$AGENT" serve --config "$work/agent.toml" 2>"$work/agent.log" & apid=$!; pids+=("$apid")
for _ in $(seq 50); do curl -s -o /dev/null --cacert "$work/ca.pem" --cert "$work/client.pem" --key "$work/client.key" \
  -H 'x-lab-protocol: 1' "https://127.0.0.1:$PORT_AGENT/v1/health" && break; sleep 0.1; done
curl -s -N --cacert "$work/ca.pem" --cert "$work/client.pem" --key "$work/client.key" -H 'x-lab-protocol: 1' \
  "https://127.0.0.1:$PORT_AGENT/v1/samples/stream" > "$work/stream.out" & pids+=("$!")
sleep 3
read -r agent_cpu agent_rss < <(measure "$apid")
lines=$(wc -l < "$work/stream.out")
agent_families=$(curl -s --cacert "$work/ca.pem" --cert "$work/client.pem" --key "$work/client.key" \
  "https://127.0.0.1:$PORT_AGENT/metrics" | grep -c '^# TYPE node_' || true)

echo "node_exporter (reference): scraped once a second over loopback, ${WINDOW}s window"
/usr/bin/prometheus-node-exporter --web.listen-address="127.0.0.1:$PORT_NE" 2>"$work/ne.log" & nepid=$!; pids+=("$nepid")
sleep 1
( end=$((SECONDS + WINDOW + 5)); while [ $SECONDS -lt $end ]; do
    curl -s -o /dev/null "http://127.0.0.1:$PORT_NE/metrics"; sleep 1; done ) & pids+=("$!")
sleep 3
read -r ne_cpu ne_rss < <(measure "$nepid")
ne_families=$(curl -s "http://127.0.0.1:$PORT_NE/metrics" | grep -c '^# TYPE node_' || true)

printf '\n%-34s %14s %10s\n' "1 Hz, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)" "CPU % of core" "RSS MB"
printf '%-34s %14s %10s\n' "lab-agent (stream, $lines samples)" "$agent_cpu" "$agent_rss"
printf '%-34s %14s %10s\n' "node_exporter (scrape)" "$ne_cpu" "$ne_rss"
printf '%-34s %14s %10s\n' "budget for lab-agent" "1.0" "20"
printf '%-34s %14s %10s\n' "lab-agent / budget" "$(echo "scale=2; $agent_cpu/1" | bc)x" "$(echo "scale=2; $agent_rss/20" | bc)x"
printf '%-34s %14s %10s\n' "lab-agent / node_exporter" \
  "$(echo "scale=2; $agent_cpu/($ne_cpu+0.001)" | bc)x" "$(echo "scale=2; $agent_rss/$ne_rss" | bc)x"
echo "node_exporter families (# TYPE node_ lines): lab-agent $agent_families, node_exporter $ne_families"
echo "(anchor, not run here: a Netdata child takes 100-200 MB RSS)"
pass=$(echo "$agent_cpu <= 1.0 && $agent_rss <= 20" | bc)
[ "$pass" = 1 ] && echo "PASS: within budget" || { echo "FAIL: over budget"; exit 2; }
