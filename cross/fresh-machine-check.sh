#!/usr/bin/env bash
# Replay the README's two commands on a fresh Debian 12 machine, simulated by a freshly
# debootstrapped root, and say which step needed something that root lacked.
#
#   cross/fresh-machine-check.sh                 check the repository's committed HEAD
#   cross/fresh-machine-check.sh --rev REV       check another commit
#   cross/fresh-machine-check.sh --only up|test  run only README step 1 (and `lab down`) or step 2
#   cross/fresh-machine-check.sh --prereq 'PKG...'  packages to install first (default: the ones
#                                                the README's "first two commands" section names
#                                                in its `apt-get install -y ...`; '' for none)
#   cross/fresh-machine-check.sh --rebuild       rebuild the cached Debian root first
#   cross/fresh-machine-check.sh --root-only     build the cached root and stop
#   cross/fresh-machine-check.sh --keep-rust-targets
#                                                leave the host's extra rustup targets in place
#   cross/fresh-machine-check.sh --step-timeout MIN  per-step limit (default 90 minutes)
#
# Must run as root on a Debian/Ubuntu host with debootstrap, unshare and overlayfs.
#
# The fresh machine: `debootstrap --variant=minbase bookworm` plus what this project's machines
# have when new (ca-certificates, gcc, libc6-dev, git, python3 with pip, qemu-utils; rustup's
# toolchain needs gcc as its linker), with empty apt lists, as a cloud or container image has.
# Built once into /var/cache/lab/fresh-check/bookworm (LAB_FRESH_CHECK_CACHE overrides), from
# the Debian mirror the host's apt uses ($LAB_DEBIAN_MIRROR, then /etc/apt/sources*, then
# deb.debian.org), and reused; the host's enabled Debian sources, apt Acquire:: settings
# (proxies), proxy variables, cargo registry config and pip settings are carried in, so the
# package registries are reachable as usual.
#
# Each run, in a private mount namespace and a cgroup of its own:
#   - an overlayfs over the cached root (the cache is never written), /proc, /sys, /dev, and a
#     tmpfs /run; the host's rustup home and ~/.cargo/bin as overlays (the host's toolchain is
#     never written; `rustup target add` works inside), an empty writable CARGO_HOME; rustup
#     targets other than the host's own are removed inside (a new rustup install has only the
#     host target) unless --keep-rust-targets;
#   - a clean `git clone` of the commit in /root/lab;
#   - as root, in /root/lab: 0. `apt-get update && apt-get install -y PREREQ...` (the README's
#     prerequisite line), 1. `cargo run --release -p lab -- up`, then
#     `cargo run --release -p lab -- down` (cleanup), 2. `cargo test --workspace`; each step
#     logged and timed.
# It reports each step's result and time, the first error lines of a failed step, the Debian
# packages and rustup targets installed during the run, and host state the run may have relied
# on (qemu-aarch64 in binfmt_misc is kernel-wide, so a host that registered it hides a missing
# registration step). On exit everything is unmounted, the run's processes are killed and the
# temp dir is removed; then it checks that no process, mount, namespace, bridge or veth of the
# run is left on the host. Logs and the report stay in /var/tmp/lab-fresh-check/<time>-<rev>/.
#
# The virtual cluster inside shares the host's network stack (bridges and veths appear on the
# host, as in CI), so the check refuses to start while the default cluster's bridge or port
# 7480 is in use on the host.
set -euo pipefail
export LC_ALL=C # sort, comm and join agree

readonly SUITE=bookworm
readonly EXTRA_PACKAGES=ca-certificates,gcc,libc6-dev,git,python3,python3-pip,qemu-utils
readonly FALLBACK_MIRROR=http://deb.debian.org/debian
readonly CACHE_DIR="${LAB_FRESH_CHECK_CACHE:-/var/cache/lab/fresh-check}"
readonly ROOT_MARKER=.fresh-check-complete
readonly RUNS_DIR=/var/tmp/lab-fresh-check
readonly CHROOT_PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
readonly DEFAULT_CLUSTER=lab
readonly DASHBOARD_PORT=7480

say() { printf '[fresh-check %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf '[fresh-check] error: %s\n' "$*" >&2
    exit 1
}
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

script="$(readlink -f "${BASH_SOURCE[0]}")"
repo="$(cd "$(dirname "$script")/.." && pwd)"

# ================================================================================ shared helpers

# The first mirror serving the bookworm suite itself in apt's sources, as control/src/rootfs.rs
# chooses it (one-line and deb822 formats).
host_mirror() {
    if [[ -n "${LAB_DEBIAN_MIRROR:-}" ]]; then
        echo "$LAB_DEBIAN_MIRROR"
        return
    fi
    local f m
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
        [[ -f "$f" ]] || continue
        case "$f" in
        *.sources)
            m="$(awk -v suite="$SUITE" '
                BEGIN { RS = ""; FS = "\n" }
                {
                    uris = ""; suites = ""; deb = 1
                    for (i = 1; i <= NF; i++) {
                        line = $i
                        if (line ~ /^[ \t]*#/) continue
                        k = tolower(line); sub(/:.*/, "", k); gsub(/[ \t]/, "", k)
                        v = line; sub(/^[^:]*:[ \t]*/, "", v)
                        if (k == "uris") uris = v
                        else if (k == "suites") suites = v
                        else if (k == "types") deb = (v ~ /(^|[ \t])deb([ \t]|$)/)
                    }
                    n = split(suites, s, /[ \t]+/)
                    for (j = 1; j <= n; j++) if (deb && s[j] == suite && uris != "") {
                        split(uris, u, /[ \t]+/); sub(/\/$/, "", u[1]); print u[1]; exit
                    }
                }' "$f")"
            ;;
        *.list)
            m="$(awk -v suite="$SUITE" '
                { sub(/#.*/, "") }
                $1 == "deb" {
                    i = 2
                    if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
                    if ($(i + 1) == suite) { u = $i; sub(/\/$/, "", u); print u; exit }
                }' "$f")"
            ;;
        *) continue ;;
        esac
        if [[ -n "$m" ]]; then
            echo "$m"
            return
        fi
    done
    echo "$FALLBACK_MIRROR"
}

# Environment the host reaches the registries with: proxies, cargo registry/http settings, pip.
registry_env() {
    local v
    while IFS= read -r v; do
        case "$v" in
        http_proxy | https_proxy | ftp_proxy | no_proxy | all_proxy | HTTP_PROXY | HTTPS_PROXY | FTP_PROXY | NO_PROXY | ALL_PROXY | \
            CARGO_REGISTRIES_* | CARGO_REGISTRY_* | CARGO_HTTP_* | CARGO_NET_* | SSL_CERT_FILE | SSL_CERT_DIR | \
            PIP_INDEX_URL | PIP_EXTRA_INDEX_URL | PIP_TRUSTED_HOST | PIP_CERT | PIP_DEFAULT_TIMEOUT | PIP_DISABLE_PIP_VERSION_CHECK | \
            RUSTUP_DIST_SERVER | RUSTUP_UPDATE_ROOT)
            printf '%s=%s\n' "$v" "${!v}"
            ;;
        esac
    done < <(compgen -e)
}

bridges() { ip -o link show type bridge 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort; }
veths() { ip -o link show type veth 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep '^lv' | sort || true; }
host_netns() { ip netns list 2>/dev/null | awk '{ print $1 }' | sort; }
binfmt_state() {
    local f=/proc/sys/fs/binfmt_misc/qemu-aarch64
    if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
        echo "binfmt_misc not mounted on the host"
    elif [[ -f "$f" ]]; then
        printf 'registered: %s\n' "$(tr '\n' ' ' <"$f" | sed 's/ magic .*//')"
    else
        echo "qemu-aarch64 not registered"
    fi
}
# Processes whose root directory is at or below $1 (their chroot).
procs_rooted_below() {
    local p r
    for p in /proc/[0-9]*; do
        r="$(readlink "$p/root" 2>/dev/null)" || continue
        [[ "$r" == "$1" || "$r" == "$1"/* ]] && echo "${p#/proc/}"
    done
    return 0
}
# Mount points at or below $1 in this mount namespace, deepest first.
mounts_below() {
    awk -v d="$1" '{ p = $5; gsub(/\\040/, " ", p); if (p == d || index(p, d "/") == 1) print p }' /proc/self/mountinfo |
        awk '{ print gsub(/\//, "/"), $0 }' | sort -rn | cut -d' ' -f2-
}

# ================================================================================ inner part
# Runs in a private mount namespace (`unshare --mount`), inside the run's cgroup; its mounts
# vanish with it even if it is killed.
if [[ "${1:-}" == __inner ]]; then
    : "${FC_ROOT:?}" "${FC_TMP:?}" "${FC_OUT:?}" "${FC_REV:?}" "${FC_STEPS:?}" "${FC_TIMEOUT:?}"
    M="$FC_TMP/merged"
    host_rustup="${RUSTUP_HOME:-$HOME/.rustup}"
    host_cargo="${CARGO_HOME:-$HOME/.cargo}"

    kill_chroot_procs() {
        local pids tries=0
        while pids="$(procs_rooted_below "$M" | grep -vx "$$" || true)"; [[ -n "$pids" ]]; do
            ((tries == 0)) && say "killing processes left inside the root: $(tr '\n' ' ' <<<"$pids")"
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
            ((++tries > 50)) && {
                say "warning: processes still inside the root: $pids"
                return 1
            }
            sleep 0.2
        done
    }
    inner_cleanup() {
        local rc=$? m
        trap - EXIT
        kill_chroot_procs || true
        while IFS= read -r m; do
            [[ -n "$m" ]] || continue
            umount "$m" 2>/dev/null || umount -l "$m" || say "warning: cannot unmount $m"
        done < <(mounts_below "$M")
        if [[ -n "$(mounts_below "$M")" ]]; then
            say "warning: still mounted below $M:"
            mounts_below "$M" >&2
        fi
        exit "$rc"
    }
    trap inner_cleanup EXIT

    mkdir -p "$FC_TMP"/{upper,work,merged,rustup-upper,rustup-work,cargobin-upper,cargobin-work}
    mount -t overlay overlay -o "lowerdir=$FC_ROOT,upperdir=$FC_TMP/upper,workdir=$FC_TMP/work" "$M"
    mount -t proc proc "$M/proc"
    mount --rbind /sys "$M/sys" && mount --make-rslave "$M/sys"
    mount --rbind /dev "$M/dev" && mount --make-rslave "$M/dev"
    mount -t tmpfs -o mode=0755 tmpfs "$M/run"
    mkdir -p "$M/root/.rustup" "$M/root/.cargo/bin"
    # redirect_dir=on: rustup renames directories of the (lower) toolchain when it removes a target.
    mount -t overlay overlay -o "lowerdir=$host_rustup,upperdir=$FC_TMP/rustup-upper,workdir=$FC_TMP/rustup-work,redirect_dir=on" \
        "$M/root/.rustup"
    mount -t overlay overlay -o "lowerdir=$host_cargo/bin,upperdir=$FC_TMP/cargobin-upper,workdir=$FC_TMP/cargobin-work,redirect_dir=on" \
        "$M/root/.cargo/bin"

    # The host's view of the network and registries.
    cp -L /etc/resolv.conf "$M/etc/resolv.conf"
    cp /etc/hosts "$M/etc/hosts"
    carried=()
    kept_sources=0
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -s "$f" ]] || continue
        ok=1
        while IFS= read -r key; do
            [[ -f "$M$key" ]] || ok=0
        done < <(grep -oiE 'signed-by[:=][[:space:]]*/[^] ,]+' "$f" | sed -E 's/^[^/]*//')
        if ((ok)) && grep -qE '^[[:space:]]*(deb[[:space:]]|URIs:)' "$f"; then
            ((kept_sources++ == 0)) && rm -f "$M/etc/apt/sources.list"
            mkdir -p "$M$(dirname "$f")"
            cp "$f" "$M$f"
            carried+=("$f")
        fi
    done
    # apt's network settings only (proxies, date checks of a snapshot mirror, CA file).
    for f in /etc/apt/apt.conf /etc/apt/apt.conf.d/*; do
        [[ -f "$f" ]] && grep -qiE 'Proxy|Check-Valid-Until|Check-Date|CaInfo' "$f" || continue
        cp "$f" "$M/etc/apt/apt.conf.d/$(basename "$f")"
        carried+=("$f")
    done
    for f in "$host_cargo/config.toml" "$host_cargo/config"; do
        [[ -f "$f" ]] && cp "$f" "$M/root/.cargo/" && carried+=("$f")
    done
    for f in /etc/pip.conf; do
        [[ -f "$f" ]] && cp "$f" "$M$f" && carried+=("$f")
    done
    # Local CAs the host trusts (e.g. a TLS-inspecting egress proxy's): without them no registry
    # answers over HTTPS here, as on the host without them.
    cas=(/usr/local/share/ca-certificates/*.crt)
    if [[ -e "${cas[0]}" ]]; then
        mkdir -p "$M/usr/local/share/ca-certificates"
        cp "${cas[@]}" "$M/usr/local/share/ca-certificates/"
        chroot "$M" update-ca-certificates >/dev/null 2>&1 || say "warning: update-ca-certificates failed in the root"
        carried+=("${cas[@]}")
    fi
    printf '%s\n' "${carried[@]}" >"$FC_OUT/carried-config.txt"

    env_file="$FC_OUT/chroot-env.txt"
    {
        printf '%s\n' HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb LANG=C.UTF-8 \
            PATH="$CHROOT_PATH" RUSTUP_HOME=/root/.rustup CARGO_HOME=/root/.cargo
        registry_env
    } >"$env_file"
    mapfile -t chroot_env <"$env_file"
    in_root() { chroot "$M" /usr/bin/env -i "${chroot_env[@]}" "$@" </dev/null; }

    say "cloning $FC_REV of $repo into the root (/root/lab)"
    git clone --quiet --no-checkout "$repo" "$M/root/lab"
    git -C "$M/root/lab" -c advice.detachedHead=false checkout --quiet "$FC_REV"

    in_root dpkg-query -W -f='${db:Status-Abbrev}\t${Package}\t${Version}\n' | awk '$1 == "ii" { print $2 "\t" $3 }' |
        sort >"$FC_OUT/dpkg-before.txt"
    host_triple="$(in_root rustc -vV | awk '/^host:/ { print $2 }')"
    in_root rustup target list --installed | sort >"$FC_OUT/rust-targets-host.txt"
    if [[ "${FC_KEEP_TARGETS:-0}" != 1 ]]; then
        while IFS= read -r t; do
            [[ "$t" == "$host_triple" ]] && continue
            say "removing rustup target $t inside the root (a new rustup install has only $host_triple)"
            in_root rustup target remove "$t" >>"$FC_OUT/rustup-remove.log" 2>&1 ||
                say "warning: could not remove $t (see $FC_OUT/rustup-remove.log)"
        done <"$FC_OUT/rust-targets-host.txt"
    fi
    in_root rustup target list --installed | sort >"$FC_OUT/rust-targets-before.txt"
    say "toolchain: $(in_root rustc -V); targets at start: $(tr '\n' ' ' <"$FC_OUT/rust-targets-before.txt")"

    # run_step NAME COMMAND...: log, time and record one step.
    run_step() {
        local name="$1" start rc=0
        shift
        say "step $name: $* (log: $FC_OUT/$name.log)"
        start=$SECONDS
        in_root /bin/bash -c 'cd /root/lab && exec "$@"' "$name" \
            timeout --kill-after=60 "${FC_TIMEOUT}m" "$@" >"$FC_OUT/$name.log" 2>&1 || rc=$?
        printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" "$*" >>"$FC_OUT/steps.tsv"
        say "step $name: exit $rc after $((SECONDS - start)) s"
        return 0
    }
    : >"$FC_OUT/steps.tsv"
    if [[ -n "${FC_PREREQ:-}" ]]; then
        # shellcheck disable=SC2086 # a list of package names
        run_step 0-prereq /bin/sh -c "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $FC_PREREQ"
    fi
    case ",$FC_STEPS," in *,up,*)
        run_step 1-up cargo run --release -p lab -- up
        if [[ -x "$M/root/lab/target/release/lab" ]]; then
            run_step 1-down cargo run --release -p lab -- down
        else
            say "step 1-down skipped: target/release/lab was not built"
        fi
        ;;
    esac
    case ",$FC_STEPS," in *,test,*)
        run_step 2-test cargo test --workspace
        ;;
    esac

    in_root dpkg-query -W -f='${db:Status-Abbrev}\t${Package}\t${Version}\n' | awk '$1 == "ii" { print $2 "\t" $3 }' |
        sort >"$FC_OUT/dpkg-after.txt"
    in_root rustup target list --installed | sort >"$FC_OUT/rust-targets-after.txt"
    in_root /bin/bash -c 'ls -d /var/cache/lab/rootfs/*/ 2>/dev/null; ls /run/netns 2>/dev/null | sed "s|^|netns inside the root: |"' \
        >"$FC_OUT/root-state-after.txt" || true
    exit 0
fi

# ================================================================================ arguments
rev=HEAD
steps=up,test
rebuild=0
root_only=0
keep_targets=0
step_timeout=90
prereq=__readme__
while [[ $# -gt 0 ]]; do
    case "$1" in
    --rev)
        [[ $# -ge 2 ]] || die "--rev needs a commit"
        rev="$2"
        shift 2
        ;;
    --only)
        [[ $# -ge 2 && ("$2" == up || "$2" == test) ]] || die "--only takes 'up' or 'test'"
        steps="$2"
        shift 2
        ;;
    --prereq)
        [[ $# -ge 2 ]] || die "--prereq needs a package list (or '')"
        prereq="$2"
        shift 2
        ;;
    --rebuild) rebuild=1 && shift ;;
    --root-only) root_only=1 && shift ;;
    --keep-rust-targets) keep_targets=1 && shift ;;
    --step-timeout)
        [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--step-timeout needs minutes"
        step_timeout="$2"
        shift 2
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
done

[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap, chroot, mounts, the virtual cluster)"
for tool in debootstrap unshare chroot git ip flock timeout; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install debootstrap util-linux git iproute2)"
done
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || die "overlayfs is not available"

# ================================================================================ cached root
root="$CACHE_DIR/$SUITE"
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.$SUITE.lock"
if ! flock -n 9; then
    say "another fresh-check holds $CACHE_DIR/.$SUITE.lock; waiting"
    flock 9
fi
if ((rebuild)) && [[ -e "$root" ]]; then
    say "--rebuild: removing $root"
    [[ -z "$(mounts_below "$root")" ]] || die "something is mounted below $root; not removing it"
    rm -rf --one-file-system "$root"
fi
if [[ ! -f "$root/$ROOT_MARKER" ]]; then
    for old in "$CACHE_DIR/.$SUITE.tmp-"*; do
        [[ -e "$old" && -z "$(mounts_below "$old")" ]] && rm -rf --one-file-system "$old"
    done
    [[ ! -e "$root" ]] || rm -rf --one-file-system "$root"
    mirror="$(host_mirror)"
    tmp="$CACHE_DIR/.$SUITE.tmp-$$"
    say "building the fresh Debian root: debootstrap --variant=minbase --include=$EXTRA_PACKAGES $SUITE from $mirror (a few minutes)"
    start=$SECONDS
    # debootstrap mounts /proc etc. in the target; a private mount namespace confines them.
    if ! unshare --mount --propagation private -- debootstrap --variant=minbase --include="$EXTRA_PACKAGES" \
        "$SUITE" "$tmp" "$mirror" >"$CACHE_DIR/debootstrap.log" 2>&1; then
        tail -n 20 "$CACHE_DIR/debootstrap.log" >&2
        rm -rf --one-file-system "$tmp"
        die "debootstrap failed (log: $CACHE_DIR/debootstrap.log)"
    fi
    # As a new cloud or container image: no package lists, no downloaded .debs.
    find "$tmp/var/lib/apt/lists" -mindepth 1 -maxdepth 1 -type f -delete
    find "$tmp/var/cache/apt/archives" -name '*.deb' -delete
    printf 'suite=%s\nvariant=minbase\ninclude=%s\nmirror=%s\nbuilt=%s\nseconds=%s\n' "$SUITE" "$EXTRA_PACKAGES" \
        "$mirror" "$(date -u +%FT%TZ)" "$((SECONDS - start))" >"$tmp/$ROOT_MARKER"
    mv "$tmp" "$root"
    say "fresh root ready at $root after $((SECONDS - start)) s"
else
    say "using the cached fresh root $root ($(grep '^built=' "$root/$ROOT_MARKER"); --rebuild to redo)"
fi
exec 9>&-
((root_only)) && exit 0

# ================================================================================ the run
commit="$(git -C "$repo" rev-parse --verify "$rev^{commit}")" || die "no commit '$rev' in $repo"
stamp="$(date -u +%Y%m%dT%H%M%SZ)-${commit:0:10}"
if [[ "$prereq" == __readme__ ]]; then
    # The packages the README's "first two commands" section tells a user to install first.
    prereq="$(git -C "$repo" show "$commit:README.md" |
        awk '/^## / { in_section = ($0 ~ /first two commands/) } in_section' |
        grep -oE 'apt-get install -y [a-z0-9.+ -]+' | head -n1 | sed 's/^apt-get install -y //; s/ *$//')" || true
fi
out="$RUNS_DIR/$stamp"
tmpdir="$RUNS_DIR/$stamp.tmp"
mkdir -p "$out" "$tmpdir"
exec > >(tee -a "$out/fresh-check.log") 2>&1
say "checking $commit ($(git -C "$repo" log -1 --format=%s "$commit" | cut -c1-80)); results in $out"
say "prerequisites the README names: ${prereq:-none}"

# Host state before the run.
default_bridge="lb$(printf 'bridge\0%s\0' "$DEFAULT_CLUSTER" | sha256sum | cut -c1-8)"
if bridges | grep -qx "$default_bridge"; then
    die "the default cluster's bridge $default_bridge already exists on the host (a 'lab up' is running here); the run inside would collide with it: 'lab down' first"
fi
if ss -Hltn "sport = :$DASHBOARD_PORT" 2>/dev/null | grep -q .; then
    die "port $DASHBOARD_PORT is in use on the host; the run's 'lab serve' would collide with it"
fi
bridges >"$out/host-bridges-before.txt"
veths >"$out/host-veths-before.txt"
host_netns >"$out/host-netns-before.txt"
binfmt_state >"$out/host-binfmt-before.txt"
say "host binfmt_misc before the run: $(cat "$out/host-binfmt-before.txt")"

# The run's cgroup: every process of the run, daemons included, is found and killed from it.
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    cgroup="/sys/fs/cgroup/lab-fresh-check-$$"
elif [[ -d /sys/fs/cgroup/pids ]]; then
    cgroup="/sys/fs/cgroup/pids/lab-fresh-check-$$"
else
    cgroup=""
fi
[[ -z "$cgroup" ]] || mkdir "$cgroup"
inner_pid=""

kill_cgroup() {
    [[ -n "$cgroup" && -d "$cgroup" ]] || return 0
    local pids tries=0
    while pids="$(cat "$cgroup/cgroup.procs")"; [[ -n "$pids" ]]; do
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        ((++tries > 100)) && {
            say "warning: processes left in $cgroup: $pids"
            return 1
        }
        sleep 0.2
    done
}
outer_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$inner_pid" ]] && kill -0 "$inner_pid" 2>/dev/null; then
        say "stopping the run"
        kill -TERM "$inner_pid" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$inner_pid" 2>/dev/null || break; sleep 1; done
    fi
    kill_cgroup || true
    [[ -z "$cgroup" ]] || rmdir "$cgroup" 2>/dev/null || say "warning: cannot remove $cgroup"
    # Leftover checks: the inner part's mounts lived in its own mount namespace.
    local left=0 m p
    m="$(mounts_below "$tmpdir")"
    [[ -z "$m" ]] || { say "LEFT BEHIND: mounts below $tmpdir: $m"; left=1; }
    p="$(procs_rooted_below "$tmpdir/merged")"
    [[ -z "$p" ]] || { say "LEFT BEHIND: processes rooted in the run's root: $p"; left=1; }
    comm -13 "$out/host-bridges-before.txt" <(bridges) | grep -x "$default_bridge" >"$out/left-bridges.txt" || true
    comm -13 "$out/host-bridges-before.txt" <(bridges) | grep '^lb' >"$out/new-bridges-any.txt" || true
    comm -13 "$out/host-veths-before.txt" <(veths) >"$out/new-veths-any.txt" || true
    comm -13 "$out/host-netns-before.txt" <(host_netns) >"$out/new-netns-any.txt" || true
    [[ ! -s "$out/left-bridges.txt" ]] || { say "LEFT BEHIND: the default cluster's bridge $default_bridge"; left=1; }
    if [[ -s "$out/new-bridges-any.txt" || -s "$out/new-veths-any.txt" || -s "$out/new-netns-any.txt" ]]; then
        say "new since the start (this run's or another user's of this host): bridges: $(tr '\n' ' ' <"$out/new-bridges-any.txt")veths: $(tr '\n' ' ' <"$out/new-veths-any.txt")netns: $(tr '\n' ' ' <"$out/new-netns-any.txt")"
    fi
    if [[ -z "$m" && -d "$tmpdir" ]]; then
        say "removing $tmpdir ($(du -sh "$tmpdir" 2>/dev/null | cut -f1))"
        rm -rf --one-file-system "$tmpdir" || { say "LEFT BEHIND: $tmpdir could not be removed"; left=1; }
    fi
    ((left == 0)) && say "nothing of the run is left on the host (processes, mounts, temp dir, default bridge)"
    echo "$left" >"$out/left-behind"
    exit "$rc"
}
trap outer_cleanup EXIT
trap 'exit 130' INT TERM

(
    [[ -z "$cgroup" ]] || echo "$BASHPID" >"$cgroup/cgroup.procs"
    exec env FC_ROOT="$root" FC_TMP="$tmpdir" FC_OUT="$out" FC_REV="$commit" FC_STEPS="$steps" \
        FC_TIMEOUT="$step_timeout" FC_KEEP_TARGETS="$keep_targets" FC_PREREQ="$prereq" \
        unshare --mount --propagation private -- bash "$script" __inner
) &
inner_pid=$!
inner_rc=0
wait "$inner_pid" || inner_rc=$?
inner_pid=""
binfmt_state >"$out/host-binfmt-after.txt"

# ================================================================================ report
{
    echo "fresh-machine check of $commit"
    echo "root: $root ($(grep -E '^(include|built)=' "$root/$ROOT_MARKER" | tr '\n' ' '))"
    echo
    echo "steps (exit, seconds, command):"
    if [[ -s "$out/steps.tsv" ]]; then
        while IFS=$'\t' read -r name rc secs cmd; do
            printf '  %-8s %s  %5s s  %s\n' "$name" "$([[ $rc == 0 ]] && echo "pass" || echo "FAIL (exit $rc)")" "$secs" "$cmd"
        done <"$out/steps.tsv"
    else
        echo "  none ran (the setup failed, exit $inner_rc)"
    fi
    while IFS=$'\t' read -r name rc _ _; do
        [[ "$rc" == 0 ]] && continue
        echo
        echo "first error lines of $name ($out/$name.log):"
        grep -nE '(^|[^a-z_])(error|Error|ERROR)(\[E[0-9]+\])?:|^error|panicked at|FAILED|not found|No such file|Unable to locate|cannot find|failed to run|test result: FAILED' \
            "$out/$name.log" | head -n 15 | sed 's/^/  /' || true
        echo "  ... last lines:"
        tail -n 8 "$out/$name.log" | sed 's/^/  /'
    done <"$out/steps.tsv"
    echo
    if [[ -s "$out/dpkg-before.txt" && -s "$out/dpkg-after.txt" ]]; then
        echo "Debian packages installed during the run (step 0's prerequisites, then the project's own installs, with dependencies):"
        comm -13 <(cut -f1 "$out/dpkg-before.txt") <(cut -f1 "$out/dpkg-after.txt") >"$out/dpkg-installed.txt"
        tr '\n' ' ' <"$out/dpkg-installed.txt" | fold -s -w 100 | sed 's/^/  /'
        echo
        echo "  ($(wc -l <"$out/dpkg-installed.txt") packages; removed during the run: $(comm -23 <(cut -f1 "$out/dpkg-before.txt") <(cut -f1 "$out/dpkg-after.txt") | tr '\n' ' '))"
    fi
    echo "rustup targets on the host: $(tr '\n' ' ' <"$out/rust-targets-host.txt" 2>/dev/null)"
    echo "rustup targets at the start inside: $(tr '\n' ' ' <"$out/rust-targets-before.txt" 2>/dev/null)"
    echo "rustup targets added during the run: $(comm -13 "$out/rust-targets-before.txt" "$out/rust-targets-after.txt" 2>/dev/null | tr '\n' ' ')"
    echo "host binfmt_misc qemu-aarch64 before: $(cat "$out/host-binfmt-before.txt")"
    echo "host binfmt_misc qemu-aarch64 after:  $(cat "$out/host-binfmt-after.txt")"
    if grep -q '^registered' "$out/host-binfmt-before.txt"; then
        echo "  (registered before the run: the kernel-wide registration hid any missing registration step)"
    fi
    echo "host config carried into the root: $(tr '\n' ' ' <"$out/carried-config.txt" 2>/dev/null)"
} | tee "$out/report.txt"

failed=0
while IFS=$'\t' read -r _ rc _ _; do [[ "$rc" == 0 ]] || failed=1; done <"$out/steps.tsv"
[[ -s "$out/steps.tsv" && $inner_rc -eq 0 ]] || failed=1
exit "$failed"
