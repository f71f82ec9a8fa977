#!/usr/bin/env bash
# Build the *peer* WebSocket server that Kommutator's hub is compared against in load
# benchmarks: Centrifuge's own example _examples/ws_benchmarks/benchmark_gorilla, as
# shipped by Debian 12 (bookworm) in golang-github-centrifugal-centrifuge-dev.
#
# Nothing is installed system-wide and nothing comes from anywhere but Debian's archive:
#   1. `apt-get download` fetches the .deb files listed below into $PEER_DIR/debs;
#   2. `dpkg -x` unpacks each of them into one private tree, $PEER_DIR/root;
#   3. the example's main.go is copied out of that tree, three lines are rewritten with
#      sed, and bench/peer/peer_flags.go (ours) is put beside it (listen address from
#      -addr / PEER_ADDR, default 127.0.0.1:8000; Redis address from -redis /
#      PEER_REDIS_ADDR, default 127.0.0.1:6379);
#   4. the Go 1.19 toolchain from the private tree builds it in GOPATH mode
#      (GO111MODULE=off: the sources come from /usr/share/gocode of the unpacked
#      packages, no module proxy is asked for anything).
#
# Usage:   bench/peer/build-centrifuge.sh            # prints the binary's path on stdout
#          BIN=$(bench/peer/build-centrifuge.sh)
# Env:     KOMMUTATOR_PEER_DIR  where everything goes (default /var/tmp/kommutator-peer)
#          PEER_FORCE=1         rebuild the binary even if it is up to date
# Idempotent: each step is skipped when its result is already there and up to date.
# Needs: Debian 12 (bookworm) with apt, dpkg-deb, sha256sum, flock. Root only if apt's
# package lists are missing (then it runs `apt-get update`).
# All progress goes to stderr; stdout carries only the binary's path.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEER_DIR="${KOMMUTATOR_PEER_DIR:-/var/tmp/kommutator-peer}"
DEBS="$PEER_DIR/debs"          # downloaded .deb files, kept between runs
ROOT="$PEER_DIR/root"          # every .deb unpacked here (dpkg -x), never into /
WORK="$PEER_DIR/work"          # GOPATH for our patched copy of the example
SRC="$WORK/src/centrifuge-peer"
BIN_DIR="$PEER_DIR/bin"
BIN="$BIN_DIR/centrifuge-peer"

GOROOT_DIR="$ROOT/usr/lib/go-1.19"
GOCODE="$ROOT/usr/share/gocode"
EXAMPLE="$GOCODE/src/github.com/centrifugal/centrifuge/_examples/ws_benchmarks/benchmark_gorilla/main.go"
OUR_GO="$SCRIPT_DIR/peer_flags.go"

# Exactly the packages the build needs, with the versions it was verified with (bookworm,
# 2026-11-29). The toolchain packages are named directly (golang-go/golang-src only add
# /usr/bin/go symlinks). The centrifuge package's Depends forgets protocol, sockjs-go,
# eagle and redisc, and prometheus' client needs six more libraries; the Go compiler's
# "cannot find package" errors found them, `go list -deps` confirms each one is used.
# `apt-get download` is used instead of `apt-get install -d`: it fetches exactly these
# files whatever is installed on the machine, while install -d would skip packages that
# happen to be installed and pull in ~30 more that the build does not use (aws-sdk-go,
# protobuf-compiler and libprotobuf, testify's and prometheus' test-only Depends).
PACKAGES=(
  # Go toolchain (Go 1.19.8)
  "golang-1.19-go=1.19.8-2"
  "golang-1.19-src=1.19.8-2"
  # Centrifuge and what its Depends lists
  "golang-github-centrifugal-centrifuge-dev=0.15.0+git20210306.f435ba2-2"
  "golang-github-fzambia-sentinel-dev=1.0.0-2"
  "golang-github-gomodule-redigo-dev=1:1.8.3-1"
  "golang-github-google-uuid-dev=1.3.0-1"
  "golang-github-gogo-protobuf-dev=1.3.2-3"
  "golang-github-gorilla-websocket-dev=1.5.0-2"              # provides golang-websocket-dev
  "golang-github-prometheus-client-golang-dev=1.14.0-3"      # provides golang-prometheus-client-dev
  # imported by centrifuge but missing from its Depends
  "golang-github-centrifugal-protocol-dev=0.3.6-3"
  "golang-github-igm-sockjs-go-dev=3.0.2-2"
  "golang-github-fzambia-eagle-dev=0.0.2-2"
  "golang-github-mna-redisc-dev=1.1.7-4"
  # imported by prometheus client_golang
  "golang-github-beorn7-perks-dev=1.0.1-1"
  "golang-github-cespare-xxhash-dev=2.1.1-2"
  "golang-github-golang-protobuf-1-3-dev=1.3.5-4"
  "golang-google-protobuf-dev=1.28.1-3"
  "golang-github-prometheus-client-model-dev=0.3.0-3"
  "golang-github-prometheus-common-dev=0.39.0-2"
  "golang-github-prometheus-procfs-dev=0.8.0-3"
  "golang-protobuf-extensions-dev=1.0.1-3"
  "golang-golang-x-sys-dev=0.3.0-1"
)

log() { printf 'build-centrifuge: %s\n' "$*" >&2; }
die() { printf 'build-centrifuge: ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; printf "build-centrifuge: ERROR: command failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

for tool in apt-get apt-cache dpkg-deb sha256sum flock sed; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found: this script needs Debian 12 (bookworm) with apt and dpkg"
done
[[ -f "$OUR_GO" ]] || die "missing $OUR_GO (it must sit beside this script)"

mkdir -p "$DEBS" "$BIN_DIR" "$WORK"
# One run at a time per PEER_DIR.
exec 9>"$PEER_DIR/.lock"
flock -w 600 9 || die "another build-centrifuge.sh holds $PEER_DIR/.lock"

# --- 1. download ------------------------------------------------------------------------
deb_of() { # the downloaded .deb of package $1, if any
  compgen -G "$DEBS/${1}_*.deb" | head -n 1 || true
}

missing=()
for spec in "${PACKAGES[@]}"; do
  pkg="${spec%%=*}"
  [[ -n "$(deb_of "$pkg")" ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
  # apt needs package lists; fetch them once if this machine has none yet.
  if ! apt-cache show --no-all-versions golang-github-centrifugal-centrifuge-dev >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]]; then
      log "apt has no package lists yet: running apt-get update"
      apt-get update >&2 || die "apt-get update failed"
    else
      die "apt knows no golang-github-centrifugal-centrifuge-dev: run 'apt-get update' as root first (Debian 12 bookworm needed)"
    fi
  fi
  for pkg in "${missing[@]}"; do
    apt-cache show --no-all-versions "$pkg" >/dev/null 2>&1 \
      || die "package $pkg is not known to apt: this script needs Debian 12 (bookworm)'s main archive"
  done
  log "downloading ${#missing[@]} package(s) into $DEBS"
  # Download as the current user into our own folder (no _apt sandbox user, which could
  # not write there). Download-only: nothing is installed. Files land in .incoming first
  # and are moved into place only when apt-get succeeded, so an interrupted run leaves
  # no truncated .deb that a later run would take as done.
  rm -rf "$DEBS/.incoming"
  mkdir -p "$DEBS/.incoming"
  (cd "$DEBS/.incoming" && apt-get download -o APT::Sandbox::User="$(id -un)" "${missing[@]}" >&2) \
    || die "apt-get download failed for: ${missing[*]}"
  mv "$DEBS/.incoming/"*.deb "$DEBS/"
  rmdir "$DEBS/.incoming"
else
  log "all ${#PACKAGES[@]} packages already downloaded in $DEBS"
fi

# Record the versions actually used; warn when one differs from the verified one.
manifest="$PEER_DIR/packages.txt"
: >"$manifest.tmp"
debs=()
for spec in "${PACKAGES[@]}"; do
  pkg="${spec%%=*}"
  want="${spec#*=}"
  deb="$(deb_of "$pkg")"
  [[ -n "$deb" ]] || die "no .deb for $pkg in $DEBS after download"
  got="$(dpkg-deb -f "$deb" Version)"
  [[ "$got" == "$want" ]] || log "WARNING: $pkg is $got, this script was verified with $want"
  printf '%s %s\n' "$pkg" "$got" >>"$manifest.tmp"
  debs+=("$deb")
done
mv "$manifest.tmp" "$manifest"

# --- 2. unpack --------------------------------------------------------------------------
debs_stamp="$(for d in "${debs[@]}"; do basename "$d"; done | sort | sha256sum | cut -d' ' -f1)"
if [[ -f "$ROOT/.debs-stamp" && "$(cat "$ROOT/.debs-stamp")" == "$debs_stamp" ]]; then
  log "packages already unpacked in $ROOT"
else
  log "unpacking ${#debs[@]} packages into $ROOT (dpkg -x, no install)"
  rm -rf "$ROOT"
  mkdir -p "$ROOT"
  for d in "${debs[@]}"; do
    dpkg-deb -x "$d" "$ROOT" || die "dpkg-deb -x $d failed"
  done
  echo "$debs_stamp" >"$ROOT/.debs-stamp"
fi
[[ -x "$GOROOT_DIR/bin/go" ]] || die "no Go toolchain at $GOROOT_DIR/bin/go after unpacking"
[[ -f "$EXAMPLE" ]] || die "example not found: $EXAMPLE"

# --- 3. copy and patch the example ---------------------------------------------------------
mkdir -p "$SRC"
cp "$EXAMPLE" "$SRC/main.go.tmp"
chmod u+w "$SRC/main.go.tmp"
sed -i \
  -e 's|^func main() {$|func main() {\n\tpeerParseFlags()|' \
  -e 's|http\.ListenAndServe(":8000", nil)|http.ListenAndServe(peerListenAddr(), nil)|' \
  -e 's|{Address: "localhost:6379"}|{Address: peerRedisAddr()}|' \
  "$SRC/main.go.tmp"
# Each rewrite must have matched exactly once, and nothing of the old addresses may remain.
for want in 'peerParseFlags()' 'http.ListenAndServe(peerListenAddr(), nil)' '{Address: peerRedisAddr()}'; do
  n="$(grep -cF "$want" "$SRC/main.go.tmp" || true)"
  [[ "$n" == 1 ]] || die "patching main.go failed: '$want' found $n times (did the example change?)"
done
if grep -qE '":8000"|localhost:6379' "$SRC/main.go.tmp"; then
  die "patching main.go failed: a hard-coded address is left"
fi
mv "$SRC/main.go.tmp" "$SRC/main.go"
cp "$OUR_GO" "$SRC/peer_flags.go"

# --- 4. build -----------------------------------------------------------------------------
# A private, fully specified Go environment: GOPATH mode, no network, no user config,
# static binary (CGO_ENABLED=0, so the result does not depend on gcc being installed).
export GOROOT="$GOROOT_DIR"
export GOPATH="$WORK:$GOCODE"
export GO111MODULE=off GOFLAGS= GOENV=off GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0
export GOCACHE="$PEER_DIR/gocache"
export PATH="$GOROOT/bin:$PATH"
go_version="$(go version)"
build_flags=(-trimpath)

build_stamp="$( {
  echo "$go_version"; echo "$debs_stamp"; echo "${build_flags[*]}"
  cat "$SRC/main.go" "$SRC/peer_flags.go"
} | sha256sum | cut -d' ' -f1)"

if [[ "${PEER_FORCE:-0}" != 1 && -x "$BIN" && -f "$BIN.stamp" && "$(cat "$BIN.stamp")" == "$build_stamp" ]]; then
  log "binary up to date: $BIN"
else
  log "building with $go_version (GOPATH mode) ..."
  start=$(date +%s)
  (cd "$SRC" && nice -n 10 go build "${build_flags[@]}" -o "$BIN.tmp" .) \
    || die "go build failed (see the compiler's messages above)"
  mv "$BIN.tmp" "$BIN"
  echo "$build_stamp" >"$BIN.stamp"
  log "built in $(( $(date +%s) - start )) s: $BIN ($(du -h "$BIN" | cut -f1))"
fi

trap - ERR
echo "$BIN"
