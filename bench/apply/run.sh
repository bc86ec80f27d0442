#!/usr/bin/env bash
# `lab apply` on a virtual cluster: bare agents -> every role running (wall time, and where it
# goes per role), then the no-change re-apply (median of 5; the reference is the same command
# when it has something to do), then the agents' cost while they supervise engines (CPU and
# RSS of each lab-agent process over a window), and the aarch64 agent's size.
# Usage (as root): bench/apply/run.sh [INVENTORY] [WINDOW_SECONDS]
#   default inventory/virtual.toml (the default cluster), window 30 s.
# The cluster is brought up with `lab up --no-apply` and left running (`lab down` removes it).
set -euo pipefail
cd "$(dirname "$0")/../.."
INV="${1:-inventory/virtual.toml}"
WINDOW="${2:-30}"
need() { command -v "$1" >/dev/null || { echo "installing $2 (for $1)"; apt-get install -y -q "$2" >/dev/null; }; }
need bc bc
# LAB=path uses that binary instead of a fresh release build (the work is the agents' anyway).
if [ -z "${LAB:-}" ]; then cargo build --release -q -p lab; LAB=target/release/lab; fi

echo "== bare agents: lab up --no-apply -i $INV"
# --purge: the boards' disks hold the agents' specs and MariaDB data; kept, the agents would
# bring their roles back by themselves and the first apply would measure nothing.
"$LAB" down --purge -i "$INV" >/dev/null 2>&1 || true
"$LAB" up --no-apply -i "$INV" >/dev/null
echo "== lab apply (bare agents -> every role running)"
t0=$(date +%s.%N)
"$LAB" apply -i "$INV" | tee /tmp/lab-apply-bench.txt | { grep -E "running after|failed" || true; }
t1=$(date +%s.%N)
first=$(echo "$t1 - $t0" | bc)
echo "== no-change re-apply x5"
times=()
for _ in 1 2 3 4 5; do
  a=$(date +%s.%N); "$LAB" apply -i "$INV" >/dev/null; b=$(date +%s.%N)
  times+=("$(echo "$b - $a" | bc)")
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)

echo "== agents while supervising engines (${WINDOW} s window)"
tck=$(getconf CLK_TCK)
declare -A s1 rss
# Only this inventory's boards (other clusters may run on the host): by the board's hostname.
boards=" $(awk -F'"' '/^name *=/{n++} n>1 && /^name *=/{print $2}' "$INV" | tr '\n' ' ') "
pids=""
for p in $(pgrep -f '^/usr/local/bin/lab-agent serve' || true); do
  host=$(nsenter -t "$p" -u hostname 2>/dev/null || echo "?")
  [[ "$boards" == *" $host "* ]] && pids="$pids $p"
done
[ -n "$pids" ] || { echo "no lab-agent serve of $INV found" >&2; exit 1; }
for p in $pids; do s1[$p]=$(awk '{print $14+$15}' "/proc/$p/stat"); done
t0=$(date +%s.%N); sleep "$WINDOW"; t1=$(date +%s.%N)
elapsed=$(echo "$t1 - $t0" | bc)
worst_cpu=0; worst_rss=0
for p in $pids; do
  [ -r "/proc/$p/stat" ] || continue
  s2=$(awk '{print $14+$15}' "/proc/$p/stat")
  cpu=$(echo "scale=3; ($s2 - ${s1[$p]}) * 100 / $tck / $elapsed" | bc)
  r=$(awk '/VmRSS/{print $2}' "/proc/$p/status")
  host=$(nsenter -t "$p" -u hostname 2>/dev/null || echo "?")
  printf '  %-10s pid %-7s cpu %6s %%  rss %6.1f MB\n' "$host" "$p" "$cpu" "$(echo "$r / 1024" | bc -l)"
  if (( $(echo "$cpu > $worst_cpu" | bc) )); then worst_cpu=$cpu; fi
  if (( r > worst_rss )); then worst_rss=$r; fi
done

echo "== the engines beside them (RSS)"
for pattern in '^/usr/local/bin/lab-agent supervise' '^/usr/sbin/mariadbd' '^/usr/bin/memcached'; do
  for p in $(pgrep -f "$pattern" || true); do
    host=$(nsenter -t "$p" -u hostname 2>/dev/null || echo "?")
    [[ "$boards" == *" $host "* ]] || continue
    printf '  %-10s %-32s rss %7.1f MB\n' "$host" "${pattern#^}" \
      "$(echo "$(awk '/VmRSS/{print $2}' "/proc/$p/status") / 1024" | bc -l)"
  done
done

echo "== the aarch64 agent (cross/build-agents.sh rebuilds it when the sources changed)"
cross/build-agents.sh --target aarch64-unknown-linux-musl >/dev/null
size=$(stat -c %s "${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-musl/release/lab-agent")

echo
printf '%-46s %12s %16s\n' "figure" "this run" "reference/budget"
printf '%-46s %11.2fs %16s\n' "lab apply, bare agents -> all roles running" "$first" "-"
printf '%-46s %11.3fs %16s\n' "lab apply, nothing to change (median of 5)" "$median" "budget 1 s"
printf '%-46s %11s%% %16s\n' "agent CPU (worst board, supervising engines)" "$worst_cpu" "budget 1 %"
printf '%-46s %10.1fMB %16s\n' "agent RSS (worst board)" "$(echo "$worst_rss / 1024" | bc -l)" "budget 20 MB"
printf '%-46s %10.2fMB %16s\n' "aarch64 agent (static, stripped)" "$(echo "$size / 1000000" | bc -l)" "budget 12 MB"
echo "(ratio no-change/first apply: $(echo "scale=4; $median / $first" | bc))"
echo "the cluster keeps running: lab down -i $INV"
