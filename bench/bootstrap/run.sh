#!/usr/bin/env bash
# Benchmark (issue 2): bootstrap of a 10-board virtual cluster, bare boards to all agents
# healthy, by `lab bootstrap` and by an Ansible playbook doing the same push, in one run.
#
#   bench/bootstrap/run.sh            as root, from anywhere in the checkout
#
# Steps: build `lab` (release) and the x86_64 agent; put ansible-core in a venv under
# ${TMPDIR:-/tmp}/lab-bench-venv if it is not there; write a 10-board inventory on a free
# 10.199.N.0/24 with its state in a temp dir; `lab up --no-bootstrap`; time `lab bootstrap`
# cold, then 5 no-change re-runs; keep what lab rendered for each board; `lab down --purge`
# and `lab up --no-bootstrap` again (bare boards, new host keys, same addresses); time the
# playbook (bench/bootstrap/playbook.yml) cold, then 5 no-change re-runs; print the table.
# Targets: Ansible/lab cold >= 5x; lab no-change re-run median < 2 s.
# Exit: 0 all targets met, 2 measured but a target missed, 1 the bench itself failed.
# BENCH_NO_BUILD=1: use the lab and agent already in target/ (when the shared tree does not build).
# BENCH_KEEP_LOGS=DIR: copy every log (lab's, Ansible's, the inventory) to DIR before cleanup.
# Talks only to the boards it creates and to loopback; removes everything it made on exit.
set -euo pipefail

readonly TARGET_COLD_RATIO=5
readonly TARGET_LAB_WARM_S=2
readonly WARM_RUNS=5
readonly ANSIBLE_CORE='ansible-core==2.19.14'
readonly AGENT_TRIPLE=x86_64-unknown-linux-musl
# name:last-octet:role, as in inventory/virtual.toml
readonly BOARDS=(lb-1:10:lb app-1:21:app app-2:22:app app-3:23:app cache-1:31:cache cache-2:32:cache
    db-1:41:db-master db-2:42:db-replica files-1:51:files cdn-1:61:cdn)
name() { echo "${1%%:*}"; }
octet() { local r=${1#*:}; echo "${r%%:*}"; }
role() { echo "${1##*:}"; }

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly ROOT
readonly LAB="$ROOT/target/release/lab"
readonly AGENT="$ROOT/target/$AGENT_TRIPLE/release/lab-agent"
readonly PLAYBOOK="$ROOT/bench/bootstrap/playbook.yml"
readonly VENV="${TMPDIR:-/tmp}/lab-bench-venv"

[[ $(id -u) == 0 ]] || die "run as root (virtual boards are network namespaces)"
for tool in curl ssh python3 ip awk cmp timeout; do
    command -v "$tool" >/dev/null || die "missing $tool"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lab-bench-boot.XXXXXX")
readonly WORK
INV=""
CLUSTER_UP=0

cleanup() {
    local rc=$?
    set +e
    # Ansible's persisted SSH masters (ControlPersist) would outlive the boards.
    for sock in "$WORK"/ansible/cp/*; do
        [[ -S $sock ]] && ssh -o ControlPath="$sock" -O exit bench-board >/dev/null 2>&1
    done
    if [[ -n ${BENCH_KEEP_LOGS:-} ]]; then
        mkdir -p "$BENCH_KEEP_LOGS" && cp "$WORK"/*.log "$WORK"/*.tlog "$WORK"/inventory.toml "$BENCH_KEEP_LOGS"/ 2>/dev/null
        say "logs kept in $BENCH_KEEP_LOGS"
    fi
    if [[ $CLUSTER_UP == 1 ]]; then
        timeout 120 "$LAB" down --purge -i "$INV" >"$WORK/down.log" 2>&1 ||
            { say "cleanup: lab down --purge failed:"; cat "$WORK/down.log" >&2; }
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
readonly LOAD_START
say "started $(date -u '+%Y-%m-%d %H:%M:%S UTC'); load average $LOAD_START on $(nproc) CPUs"

# 1. Setup ------------------------------------------------------------------------------
if [[ -n ${BENCH_NO_BUILD:-} ]]; then
    say "BENCH_NO_BUILD: using the binaries already built (lab $(date -ur "$LAB" '+%H:%M UTC'), agent $(date -ur "$AGENT" '+%H:%M UTC'))"
else
    say "building lab (release) and the $AGENT_TRIPLE agent"
    (cd "$ROOT" && timeout 1800 cargo build --release -q -p lab) || die "cargo build failed"
    (cd "$ROOT" && timeout 1800 cross/build-agents.sh --target "$AGENT_TRIPLE" >"$WORK/agents.log" 2>&1) ||
        { cat "$WORK/agents.log" >&2; die "cross/build-agents.sh failed"; }
fi
[[ -x $LAB && -x $AGENT ]] || die "missing $LAB or $AGENT after the build"

if [[ ! -x $VENV/bin/ansible-playbook ]]; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        say "installing python3-venv (apt-get) for the Ansible venv"
        timeout 600 apt-get install -y -q python3-venv >/dev/null
    fi
    say "installing $ANSIBLE_CORE from PyPI into $VENV"
    rm -rf "$VENV"
    timeout 120 python3 -m venv "$VENV"
    timeout 600 "$VENV/bin/pip" install -q --disable-pip-version-check "$ANSIBLE_CORE"
fi

# 2. Inventory on a free subnet; bare boards ----------------------------------------------
subnet_free() {
    ! ip -4 -o addr show | grep -q " 10\.199\.$1\." &&
        [[ -z $(ip -4 route show "10.199.$1.0/24") ]]
}
NET=""
for _ in $(seq 50); do
    n=$((RANDOM % 254 + 1))
    if subnet_free "$n"; then NET=$n && break; fi
done
[[ -n $NET ]] || die "no free 10.199.N.0/24 found"
readonly CLUSTER="bench-boot-$$"
readonly STATE="$WORK/state"
INV="$WORK/inventory.toml"
{
    printf '[cluster]\nname = "%s"\nssh_key = "managed"\nssh_user = "root"\nstate_dir = "%s"\n' "$CLUSTER" "$STATE"
    printf '\n[virtual]\nsubnet = "10.199.%s.0/24"\n' "$NET"
    for b in "${BOARDS[@]}"; do
        printf '\n[[board]]\nname = "%s"\naddress = "10.199.%s.%s"\nroles = ["%s"]\n' \
            "$(name "$b")" "$NET" "$(octet "$b")" "$(role "$b")"
    done
} >"$INV"
unset SSH_AUTH_SOCK # both tools use the cluster's managed key, nothing else

bare_boards() {
    CLUSTER_UP=1
    timeout 300 "$LAB" up --no-bootstrap -i "$INV" >"$WORK/up.log" 2>&1 ||
        { cat "$WORK/up.log" >&2; die "lab up --no-bootstrap failed"; }
}
say "cluster $CLUSTER: 10 bare boards on 10.199.$NET.0/24 (state in $STATE)"
bare_boards

# Timing: wall clock around one command, output to a log; the seconds go to stdout.
timed() {
    local log=$1
    shift
    local t0 t1
    t0=$(date +%s.%N)
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        die "failed: $*"
    fi
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }'
}
# median min max of the numbers on stdin
stats() { sort -g | awk '{ v[NR] = $1 } END { printf "%.2f %.2f %.2f\n", v[int((NR + 1) / 2)], v[1], v[NR] }'; }

# 3. lab cold, lab warm ---------------------------------------------------------------------
export LAB_LOG=warn,lab::bootstrap=debug # per-board step timings in the logs (a few lines)
LOAD_LAB=$(cut -d' ' -f1-3 /proc/loadavg)
say "lab bootstrap, cold (load $LOAD_LAB)"
LAB_COLD=$(timed "$WORK/lab-cold.log" timeout 300 "$LAB" bootstrap -i "$INV")
grep -E '^ *[a-z0-9-]+ +ok: ' "$WORK/lab-cold.log" | sed 's/^/  /' >&2 || true
[[ $(grep -c 'ok: .*agent uploaded' "$WORK/lab-cold.log") == 10 ]] ||
    { cat "$WORK/lab-cold.log" >&2; die "lab cold run did not upload to all 10 boards"; }
LAB_WARM_ALL=()
for i in $(seq "$WARM_RUNS"); do
    LAB_WARM_ALL+=("$(timed "$WORK/lab-warm-$i.log" timeout 120 "$LAB" bootstrap -i "$INV")")
    [[ $(grep -c 'ok: .*(unchanged)' "$WORK/lab-warm-$i.log") == 10 ]] ||
        { cat "$WORK/lab-warm-$i.log" >&2; die "lab re-run $i changed something"; }
done
read -r LAB_WARM LAB_WARM_MIN LAB_WARM_MAX < <(printf '%s\n' "${LAB_WARM_ALL[@]}" | stats)
say "lab: cold ${LAB_COLD}s; re-runs ${LAB_WARM_ALL[*]} s"
# lab's debug lines "<step> board=B at_ms=N" -> one row per board: ms at the end of each step
steps() {
    sed 's/\x1b\[[0-9;]*m//g' "$1" | awk '/lab::bootstrap: .* board=.* at_ms=/ {
        b = $0; sub(/.* board=/, "", b); sub(/ .*/, "", b)
        ms = $0; sub(/.* at_ms=/, "", ms); sub(/ .*/, "", ms)
        row[b] = row[b] sprintf(" %6s", ms)
    } END { for (b in row) printf "    %-8s%s\n", b, row[b] }' | sort
}
say "lab per board, ms at: connected+authenticated / files compared+uploaded / start done / healthy"
say "  cold:"
steps "$WORK/lab-cold.log" >&2
say "  last re-run:"
steps "$WORK/lab-warm-$WARM_RUNS.log" >&2

# Keep what lab rendered for each board (the Ansible "templates") and check the binary.
FILES="$WORK/files"
for b in "${BOARDS[@]}"; do
    board=$(name "$b")
    disk="$STATE/virtual/$board/disk"
    mkdir -p "$FILES/$board"
    cp -a "$disk/etc-lab/agent.toml" "$disk/etc-lab/tls" "$FILES/$board/"
    cmp -s "$disk/usr-local-bin/lab-agent" "$AGENT" ||
        die "$board: the agent lab pushed is not $AGENT"
done

# 4. Reset to bare boards (same addresses, new host keys) ---------------------------------
say "reset: lab down --purge, lab up --no-bootstrap"
timeout 120 "$LAB" down --purge -i "$INV" >"$WORK/down.log" 2>&1 ||
    { cat "$WORK/down.log" >&2; die "lab down --purge failed"; }
CLUSTER_UP=0
bare_boards
[[ ! -e $STATE/virtual/lb-1/disk/usr-local-bin/lab-agent ]] || die "reset left an agent on lb-1"

# 5. Ansible cold, Ansible warm --------------------------------------------------------------
A="$WORK/ansible"
mkdir -p "$A/cp" "$A/home" "$A/tmp"
cat >"$A/ansible.cfg" <<EOF
[defaults]
inventory = $A/hosts.ini
forks = 10
host_key_checking = False
interpreter_python = /usr/bin/python3
retry_files_enabled = False
local_tmp = $A/tmp
# Boards share the host's /root (not its /tmp, a tmpfs per board): keep ~/.ansible untouched.
remote_tmp = $A/rtmp

[ssh_connection]
pipelining = True
control_path_dir = $A/cp
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR
EOF
{
    echo '[boards]'
    for b in "${BOARDS[@]}"; do
        addr="10.199.$NET.$(octet "$b")"
        printf '%s ansible_host=%s board_addr=%s\n' "$(name "$b")" "$addr" "$addr"
    done
    printf '\n[boards:vars]\nansible_user=root\nansible_ssh_private_key_file=%s\n' "$STATE/ssh/id_ed25519"
} >"$A/hosts.ini"
export ANSIBLE_CONFIG="$A/ansible.cfg" ANSIBLE_HOME="$A/home" ANSIBLE_NOCOLOR=1
playbook() { # $1: Ansible's own timestamped log (per-task timings)
    ANSIBLE_LOG_PATH=$1 timeout 300 "$VENV/bin/ansible-playbook" "$PLAYBOOK" \
        -e "agent_bin=$AGENT" -e "files_dir=$FILES" -e "pki_dir=$STATE/pki"
}
# "changed=N" summed over the recap lines
changed() { grep -E '^[a-z0-9-]+ +: ok=' "$1" | sed -E 's/.* changed=([0-9]+).*/\1/' | awk '{ s += $1 } END { print s + 0 }'; }
recap_ok() { [[ $(grep -cE '^[a-z0-9-]+ +: ok=[0-9]+ +changed=[0-9]+ +unreachable=0 +failed=0' "$1") == 10 ]]; }

LOAD_ANSIBLE=$(cut -d' ' -f1-3 /proc/loadavg)
say "ansible-playbook, cold (load $LOAD_ANSIBLE)"
ANSIBLE_COLD=$(timed "$WORK/ansible-cold.log" playbook "$WORK/ansible-cold.tlog")
recap_ok "$WORK/ansible-cold.log" || { cat "$WORK/ansible-cold.log" >&2; die "playbook cold run failed on a board"; }
ANSIBLE_COLD_CHANGED=$(changed "$WORK/ansible-cold.log")
ANSIBLE_WARM_ALL=()
for i in $(seq "$WARM_RUNS"); do
    ANSIBLE_WARM_ALL+=("$(timed "$WORK/ansible-warm-$i.log" playbook "$WORK/ansible-warm-$i.tlog")")
    if ! recap_ok "$WORK/ansible-warm-$i.log" || [[ $(changed "$WORK/ansible-warm-$i.log") != 0 ]]; then
        cat "$WORK/ansible-warm-$i.log" >&2
        die "playbook re-run $i changed something or failed"
    fi
done
read -r ANSIBLE_WARM ANSIBLE_WARM_MIN ANSIBLE_WARM_MAX < <(printf '%s\n' "${ANSIBLE_WARM_ALL[@]}" | stats)
say "ansible: cold ${ANSIBLE_COLD}s ($ANSIBLE_COLD_CHANGED changes); re-runs ${ANSIBLE_WARM_ALL[*]} s"
# Seconds from each task's start to the next one's (all 10 boards), from Ansible's log.
task_times() {
    awk -F'[ |]' '/\| (TASK|PLAY RECAP)/ {
        split($2, t, /[:,]/); now = t[1] * 3600 + t[2] * 60 + t[3] + t[4] / 1000
        if (name != "") printf "    %-50s %6.2fs\n", name, now - start
        name = $0; sub(/.*\| (TASK )?/, "", name); sub(/ \*+$/, "", name); start = now
    }' "$1"
}
say "Ansible per task, cold run:"
task_times "$WORK/ansible-cold.tlog" >&2
say "Ansible per task, last re-run:"
task_times "$WORK/ansible-warm-$WARM_RUNS.tlog" >&2

# Cross-check through lab's own mTLS client: the agents Ansible started answer as their board.
timeout 60 "$LAB" status -i "$INV" >"$WORK/status.log" 2>&1 ||
    { cat "$WORK/status.log" >&2; die "lab status after the playbook failed"; }

# 6. Report ------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
COLD_RATIO=$(ratio "$ANSIBLE_COLD" "$LAB_COLD")
WARM_RATIO=$(ratio "$ANSIBLE_WARM" "$LAB_WARM")
COLD_OK=$(awk -v r="$COLD_RATIO" -v t="$TARGET_COLD_RATIO" 'BEGIN { print (r >= t) ? "PASS" : "FAIL" }')
WARM_OK=$(awk -v w="$LAB_WARM" -v t="$TARGET_LAB_WARM_S" 'BEGIN { print (w < t) ? "PASS" : "FAIL" }')

echo
echo "bootstrap of 10 virtual boards: lab vs Ansible ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo "machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), kernel $(uname -r)"
echo "load average (1/5/15 min): start $LOAD_START; before lab $LOAD_LAB; before Ansible $LOAD_ANSIBLE; end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tree: $(git -C "$ROOT" rev-parse --short HEAD) with $(git -C "$ROOT" status --porcelain | wc -l) uncommitted path(s)"
echo "versions: $("$LAB" --version); $("$VENV/bin/ansible" --version | sed -n 1p); $(ssh -V 2>&1)"
echo "parallelism: lab 16 at a time (default), Ansible forks=10; boards: 10"
echo
printf '%-34s %10s %10s %16s\n' "" "lab" "Ansible" "Ansible / lab"
printf '%-34s %9ss %9ss %15sx\n' "cold (bare boards -> all healthy)" "$LAB_COLD" "$ANSIBLE_COLD" "$COLD_RATIO"
printf '%-34s %9ss %9ss %15sx\n' "no-change re-run, median of $WARM_RUNS" "$LAB_WARM" "$ANSIBLE_WARM" "$WARM_RATIO"
printf '%-34s %10s %10s\n' "  re-run min..max" "$LAB_WARM_MIN..$LAB_WARM_MAX" "$ANSIBLE_WARM_MIN..$ANSIBLE_WARM_MAX"
echo
echo "target cold Ansible/lab >= ${TARGET_COLD_RATIO}x: $COLD_OK ($COLD_RATIO x)"
echo "target lab re-run < ${TARGET_LAB_WARM_S} s:       $WARM_OK (${LAB_WARM} s)"

[[ $COLD_OK == PASS && $WARM_OK == PASS ]] || exit 2
