#!/usr/bin/env bash
# Build the static `lab-agent` binaries that `lab bootstrap` pushes to boards, without Docker.
#
#   cross/build-agents.sh                      aarch64 + x86_64 (musl, fully static)
#   cross/build-agents.sh --all                ... and armv7 (glibc >= 2.28, for 32-bit Pi OS)
#   cross/build-agents.sh --target TRIPLE ...  only the named targets (repeatable)
#
# Targets and how each is built:
#   aarch64-unknown-linux-musl     rustup target + Debian gcc-aarch64-linux-gnu as linker and CC
#   x86_64-unknown-linux-musl      rustup target + Debian musl-tools (musl-gcc) as CC for ring
#   armv7-unknown-linux-gnueabihf  rustup target + zig (PyPI ziglang) + cargo-zigbuild, linked
#                                  against glibc 2.28 symbols so it runs on Raspberry Pi OS
#                                  buster and newer (rustup refuses the armv7 musl targets here)
#
# Every missing tool is installed once (rustup target add, apt-get install, pip install,
# cargo install) and the script says so before doing it; nothing is written to ~/.cargo/config:
# linkers and C compilers are passed as CARGO_TARGET_<TRIPLE>_LINKER / CC_<triple> variables.
# Output: ${CARGO_TARGET_DIR:-target}/<triple>/release/lab-agent (cargo's usual place).
# Set LAB_BUILD_AGENTS_NO_INSTALL=1 to fail instead of installing anything.
set -euo pipefail

readonly ALL_TARGETS=(aarch64-unknown-linux-musl x86_64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
readonly DEFAULT_TARGETS=(aarch64-unknown-linux-musl x86_64-unknown-linux-musl)
readonly GLIBC_FLOOR=2.28
readonly ZIGBUILD_VERSION='^0.24'

say() { printf 'build-agents: %s\n' "$*" >&2; }
die() {
    printf 'build-agents: error: %s\n' "$*" >&2
    exit 1
}
# shellcheck disable=SC2317 # invoked by the ERR trap
on_err() {
    local rc=$?
    printf 'build-agents: error: command failed (exit %s) at line %s: %s\n' "$rc" "${BASH_LINENO[0]}" "$BASH_COMMAND" >&2
}
trap on_err ERR

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

# ---------------------------------------------------------------------------------- arguments
targets=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --target)
        [[ $# -ge 2 ]] || die "--target needs a triple (one of: ${ALL_TARGETS[*]})"
        targets+=("$2")
        shift 2
        ;;
    --target=*)
        targets+=("${1#--target=}")
        shift
        ;;
    --all)
        targets+=("${ALL_TARGETS[@]}")
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=("${DEFAULT_TARGETS[@]}")

# Validate and de-duplicate, keeping order.
declare -A seen=()
wanted=()
for t in "${targets[@]}"; do
    t="${t%.2.*}" # accept the zigbuild spelling armv7-unknown-linux-gnueabihf.2.28 too
    case " ${ALL_TARGETS[*]} " in
    *" $t "*) ;;
    *) die "unsupported target '$t'; supported: ${ALL_TARGETS[*]}" ;;
    esac
    [[ -n "${seen[$t]:-}" ]] && continue
    seen[$t]=1
    wanted+=("$t")
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[[ -f Cargo.toml && -d agent ]] || die "$root does not look like the lab workspace (no Cargo.toml/agent/)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

# ---------------------------------------------------------------------------------- installers
have() { command -v "$1" >/dev/null 2>&1; }

may_install() {
    if [[ "${LAB_BUILD_AGENTS_NO_INSTALL:-}" == 1 ]]; then
        die "missing: $1 (LAB_BUILD_AGENTS_NO_INSTALL=1, so not installing it; install it yourself: $2)"
    fi
    say "installing $1: $2"
}

apt_install() { # apt_install PACKAGE... (only those whose dpkg status is not 'installed')
    local missing=() p
    for p in "$@"; do
        [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" == "install ok installed" ]] || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    have apt-get || die "need Debian/Ubuntu packages ${missing[*]} but apt-get is not available; install their equivalents"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        have sudo || die "need root (or sudo) to install ${missing[*]}: run 'sudo apt-get install ${missing[*]}'"
        sudo=(sudo)
    fi
    may_install "${missing[*]}" "apt-get install -y ${missing[*]}"
    # Wait for a concurrent apt/dpkg instead of failing on its lock; refresh lists only if needed.
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"; then
        say "apt-get install failed; refreshing package lists once and retrying"
        "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" ||
            die "could not install ${missing[*]} with apt-get"
    fi
}

rustup_target() {
    have rustup || die "rustup is required (https://rustup.rs) to add the target $1"
    local installed
    installed="$(rustup target list --installed)" || die "rustup target list failed"
    if ! grep -qx "$1" <<<"$installed"; then
        may_install "rust std for $1" "rustup target add $1"
        rustup target add "$1" || die "rustup could not add target $1"
    fi
}

python_bin() {
    local p
    for p in python3 python; do have "$p" && {
        echo "$p"
        return 0
    }; done
    return 1
}

ensure_zig() {
    if have zig; then return 0; fi
    local py
    py="$(python_bin)" || die "zig is needed for armv7 (glibc $GLIBC_FLOOR floor) and neither zig nor python3 is available; install python3 and run 'pip install ziglang'"
    if ! "$py" -c 'import ziglang' 2>/dev/null; then
        may_install "zig (PyPI package ziglang)" "$py -m pip install ziglang"
        "$py" -m pip install --quiet ziglang || die "pip could not install ziglang"
    fi
    local zdir
    zdir="$("$py" -c 'import os, ziglang; print(os.path.dirname(ziglang.__file__))')"
    [[ -x "$zdir/zig" ]] || die "ziglang is installed but $zdir/zig is missing"
    export PATH="$zdir:$PATH"
    have zig || die "zig still not on PATH after adding $zdir"
}

ensure_zigbuild() {
    if cargo zigbuild --help >/dev/null 2>&1; then return 0; fi
    may_install "cargo-zigbuild" "cargo install --locked cargo-zigbuild --version '$ZIGBUILD_VERSION'"
    cargo install --locked cargo-zigbuild --version "$ZIGBUILD_VERSION" || die "cargo install cargo-zigbuild failed"
}

env_name() { # aarch64-unknown-linux-musl -> AARCH64_UNKNOWN_LINUX_MUSL
    local s="${1//-/_}"
    echo "${s^^}"
}

# ---------------------------------------------------------------------------------- toolchains
have cargo || die "cargo is required (https://rustup.rs)"
musl_targets=()
zig_targets=()
for t in "${wanted[@]}"; do
    rustup_target "$t"
    case "$t" in
    aarch64-unknown-linux-musl)
        # The cross gcc only *recommends* the arm64 libc headers that ring's C code needs.
        apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu
        have aarch64-linux-gnu-gcc || die "aarch64-linux-gnu-gcc not found after installing gcc-aarch64-linux-gnu"
        export "CARGO_TARGET_$(env_name "$t")_LINKER=aarch64-linux-gnu-gcc"
        export "CC_${t//-/_}=aarch64-linux-gnu-gcc"
        export "AR_${t//-/_}=aarch64-linux-gnu-ar"
        musl_targets+=("$t")
        ;;
    x86_64-unknown-linux-musl)
        apt_install musl-tools
        have musl-gcc || die "musl-gcc not found after installing musl-tools"
        export "CC_${t//-/_}=musl-gcc"
        musl_targets+=("$t")
        ;;
    armv7-unknown-linux-gnueabihf)
        ensure_zig
        ensure_zigbuild
        zig_targets+=("$t")
        ;;
    esac
done

# ---------------------------------------------------------------------------------- build
start=$SECONDS
if [[ ${#musl_targets[@]} -gt 0 ]]; then
    args=()
    for t in "${musl_targets[@]}"; do args+=(--target "$t"); done
    say "cargo build --release -p lab-agent ${args[*]}"
    cargo build --release --locked -p lab-agent "${args[@]}" ||
        die "cargo build failed for ${musl_targets[*]} (see the compiler output above)"
fi
for t in "${zig_targets[@]}"; do
    say "cargo zigbuild --release -p lab-agent --target $t.$GLIBC_FLOOR"
    cargo zigbuild --release --locked -p lab-agent --target "$t.$GLIBC_FLOOR" ||
        die "cargo zigbuild failed for $t (glibc $GLIBC_FLOOR; see the output above)"
done
say "built ${#wanted[@]} agent(s) in $((SECONDS - start)) s"

# ---------------------------------------------------------------------------------- report
objdump_for() {
    case "$1" in
    armv7-*) for o in arm-linux-gnueabihf-objdump llvm-objdump objdump; do have "$o" && echo "$o" && return 0; done ;;
    *) for o in objdump llvm-objdump; do have "$o" && echo "$o" && return 0; done ;;
    esac
    return 1
}

has_interp() { # true when the ELF file asks for a dynamic loader (PT_INTERP)
    local headers
    headers="$(readelf -lW "$1")" || die "readelf -l $1 failed"
    grep -q 'Requesting program interpreter' <<<"$headers"
}

describe() { # a `file`-style one-liner, from readelf when `file` is not installed
    if have file; then
        file -b "$1"
    else
        readelf -h "$1" | awk -F: '/Class|Machine|Type/ {gsub(/^ +/, "", $2); printf "%s; ", $2}'
        if has_interp "$1"; then echo "dynamic"; else echo "static"; fi
    fi
}

status=0
for t in "${wanted[@]}"; do
    bin="$target_dir/$t/release/lab-agent"
    [[ -x "$bin" ]] || die "$bin was not produced"
    size=$(stat -c %s "$bin")
    printf '%s\n  size: %s bytes (%s KiB), stripped by the release profile\n  file: %s\n' \
        "$bin" "$size" "$((size / 1024))" "$(describe "$bin")"
    case "$t" in
    *-musl)
        if has_interp "$bin"; then
            say "error: $bin is dynamically linked; expected a static musl binary"
            status=1
        fi
        ;;
    armv7-*)
        if od=$(objdump_for "$t"); then
            syms="$("$od" -T "$bin")" || die "$od -T $bin failed"
            newest=$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$syms" | sort -t_ -k2 -V -u | tail -n1 || true)
            printf '  newest glibc symbol: %s (floor %s)\n' "${newest:-none}" "$GLIBC_FLOOR"
            if [[ -n "$newest" ]] && [[ "$(printf '%s\n%s\n' "${newest#GLIBC_}" "$GLIBC_FLOOR" | sort -V | tail -n1)" != "$GLIBC_FLOOR" ]]; then
                say "error: $bin needs $newest, newer than the glibc $GLIBC_FLOOR floor"
                status=1
            fi
        else
            say "warning: no objdump to check glibc symbol versions (apt-get install binutils-arm-linux-gnueabihf)"
        fi
        ;;
    esac
done
exit "$status"
