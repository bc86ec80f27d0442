#!/usr/bin/env bash
# Shaped virtual links, measured from outside: a three-board virtual cluster in two data
# centers (east: e-1, e-2; west: w-1; wan_delay 40 ms), bare boards (no bootstrap).
# - TCP handshake to each board's sshd (median of 10, from the host and from inside e-1's
#   namespace): within a data center, across the WAN, and to e-2 with `lab link --delay 30ms
#   --jitter 5ms` (target: about the delay added, no more than a few ms over).
# - Bulk TCP from the host into e-2 (python sockets, as fast as they go): plain, then
#   `--rate 100mbit`, `--rate 10mbit` (target: within 10 % of the rate), and `--rate 10gbit`
#   (what the user-space shaper itself carries, against the plain veth).
# As root (virtual cluster); installs python3-minimal with apt-get when missing.
# Usage: bench/link/run.sh   env: LAB=target/debug/lab (built with cargo build -p lab if unset)
set -euo pipefail
cd "$(dirname "$0")/../.."
need() { [ -x "$1" ] || { echo "installing $2"; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" >/dev/null; }; }
need /usr/bin/python3 python3-minimal
if [ -z "${LAB:-}" ]; then
  cargo build -q -p lab
  LAB="${CARGO_TARGET_DIR:-target}/debug/lab"
fi
work="$(mktemp -d)"
inv="$work/inventory.toml"
cleanup() { "$LAB" down -i "$inv" --purge >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
cat > "$inv" <<TOML
[cluster]
name = "benchlink"
ssh_key = "managed"
ssh_user = "root"
state_dir = "state"

[virtual]
subnet = "10.253.7.0/24"
wan_delay = "40ms"

[[board]]
name = "e-1"
address = "10.253.7.10"
roles = []
dc = "east"

[[board]]
name = "e-2"
address = "10.253.7.11"
roles = []
dc = "east"

[[board]]
name = "w-1"
address = "10.253.7.12"
roles = []
dc = "west"
TOML
"$LAB" up -i "$inv" --no-bootstrap >/dev/null
ns() { echo "lab-benchlink_$1"; }

cat > "$work/measure.py" <<'PY'
import socket, sys, time
mode, addr = sys.argv[1], sys.argv[2]
if mode == "rtt":
    ts = []
    for _ in range(10):
        t = time.perf_counter()
        socket.create_connection((addr, 22), timeout=5).close()
        ts.append((time.perf_counter() - t) * 1000)
    ts.sort()
    print(f"{(ts[4] + ts[5]) / 2:.2f}")
elif mode == "serve":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 5001)); s.listen(1); c, _ = s.accept()
    while c.recv(1 << 16): pass
    c.sendall(b"ok"); c.close()
else:
    total = int(sys.argv[3]) << 20
    for _ in range(50):
        try:
            c = socket.create_connection((addr, 5001), timeout=5); break
        except OSError:
            time.sleep(0.1)
    buf, sent, t = b"x" * (1 << 16), 0, time.perf_counter()
    while sent < total: c.sendall(buf); sent += len(buf)
    c.shutdown(socket.SHUT_WR); c.recv(2)
    print(f"{sent * 8 / (time.perf_counter() - t) / 1e6:.1f}")
PY
rtt() { if [ "$1" = host ]; then python3 "$work/measure.py" rtt "$2"; else ip netns exec "$(ns "$1")" python3 "$work/measure.py" rtt "$2"; fi; }
bulk() {
  ip netns exec "$(ns e-2)" python3 "$work/measure.py" serve 10.253.7.11 &
  local server=$!
  python3 "$work/measure.py" send 10.253.7.11 "$1"
  wait "$server"
}

printf '%-44s %s\n' "handshake (median of 10)" "ms"
printf '%-44s %s\n' "host -> e-1 (same data center)" "$(rtt host 10.253.7.10)"
printf '%-44s %s\n' "e-1 -> e-2 (same data center)" "$(rtt e-1 10.253.7.11)"
printf '%-44s %s\n' "host -> w-1 (across, wan_delay 40ms)" "$(rtt host 10.253.7.12)"
printf '%-44s %s\n' "e-1 -> w-1 (across, wan_delay 40ms)" "$(rtt e-1 10.253.7.12)"
"$LAB" link -i "$inv" e-2 --delay 30ms --jitter 5ms >/dev/null
printf '%-44s %s\n' "host -> e-2 (lab link --delay 30ms --jitter 5ms)" "$(rtt host 10.253.7.11)"
"$LAB" link -i "$inv" e-2 --clear >/dev/null
echo
printf '%-44s %s\n' "bulk TCP host -> e-2" "Mbit/s"
printf '%-44s %s\n' "plain veth" "$(bulk 200)"
for rate in 100mbit 10mbit 10gbit; do
  "$LAB" link -i "$inv" e-2 --rate "$rate" >/dev/null
  size=20; [ "$rate" = 10mbit ] && size=5; [ "$rate" = 10gbit ] && size=200
  printf '%-44s %s\n' "lab link --rate $rate" "$(bulk "$size")"
done
