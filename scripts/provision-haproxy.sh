#!/usr/bin/env bash
# provision-haproxy.sh - provision real HAProxy binaries (several versions) for
# the nestjs-spoe test suite, without Docker and without touching the system's
# apt configuration or libraries.
#
# Usage:
#   scripts/provision-haproxy.sh [--force] [VERSION...]
#       Provision each VERSION (major.minor; default: 2.6 3.0 3.2 3.4),
#       sequentially. Already provisioned versions whose wrapper still runs
#       are left alone ("cached"). --force re-provisions them anyway.
#   scripts/provision-haproxy.sh --print-path VERSION
#       Print the wrapper path for VERSION on stdout (and nothing else),
#       provisioning it first if needed. Progress goes to stderr.
#   scripts/provision-haproxy.sh -h | --help
#
# Where versions come from (Debian archive, exact version resolved at run time):
#   2.6 -> bookworm (+ bookworm-updates, bookworm-security)
#   3.0 -> trixie   (+ trixie-updates, trixie-security)
#   3.2 -> sid
#   3.4 -> experimental (dependencies from sid)
#   Override for a version with e.g. NESTJS_SPOE_HAPROXY_SUITES_3_4="sid experimental"
#   (security suites are written as "<suite>-security").
#
# How it works: with a PRIVATE apt configuration (own sources list, lists and
# cache dirs in a temp dir; /etc/apt is only read for its global apt.conf),
# it downloads haproxy=<version> and, recursively, all the packages it needs to
# run (libc6 included) from the same suite(s) with `apt-get download`, unpacks
# every .deb with `dpkg -x` into one private root, and writes a small wrapper
# that starts the binary through that root's own dynamic loader:
#   ROOT/.../ld-linux-x86-64.so.2 --inhibit-cache --library-path ROOT/... \
#       --argv0 WRAPPER ROOT/usr/sbin/haproxy "$@"
# Nothing is installed; no system file is modified.
#
# Result layout (outside the clone):
#   ${NESTJS_SPOE_CACHE:-$HOME/.cache/nestjs-spoe}/haproxy/<major.minor>/
#       haproxy          executable wrapper - run this
#       root/            unpacked packages (private sysroot)
#       SPOE.txt         the version's doc/SPOE.txt (uncompressed), if shipped
#       VERSION          exact Debian version, suites and package list
# A version directory only appears (atomic rename) once fully provisioned and
# verified, so an interrupted run never leaves a half-provisioned version.
#
# Environment:
#   NESTJS_SPOE_CACHE           cache root (default: $HOME/.cache/nestjs-spoe)
#   NESTJS_SPOE_DEBIAN_MIRROR   default: http://deb.debian.org/debian
#   NESTJS_SPOE_DEBIAN_SECURITY default: http://deb.debian.org/debian-security
#   NESTJS_SPOE_DEBIAN_KEYRING  default: /usr/share/keyrings/debian-archive-keyring.gpg
#
# Caveats of running through an explicit ld.so:
#   - the process name (comm, /proc/PID/exe) is "ld-linux-x86-64", not
#     "haproxy": track processes by PID, not with pgrep/pkill by name.
#   - master-worker reload (-W + SIGUSR2) works because the wrapper passes its
#     own path as argv[0] (ld.so --argv0) and HAProxy re-executes argv[0];
#     never start ROOT/usr/sbin/haproxy directly (the host's loader cannot
#     run it). "path to executable" in HAProxy's output shows the raw binary.

set -euo pipefail

readonly PROG="provision-haproxy"
readonly DEFAULT_VERSIONS=(2.6 3.0 3.2 3.4)
CACHE_ROOT="${NESTJS_SPOE_CACHE:-${HOME:?HOME is not set}/.cache/nestjs-spoe}"
HAPROXY_CACHE="$CACHE_ROOT/haproxy"
MIRROR="${NESTJS_SPOE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${NESTJS_SPOE_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"
KEYRING="${NESTJS_SPOE_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"

# Packages that are never needed to *run* /usr/sbin/haproxy (maintainer-script,
# init-system and packaging helpers). They are not followed nor downloaded.
readonly DENY_RE='^(adduser|base-files|base-passwd|bash|cdebconf|coreutils|debconf|debconf-2[.]0|debianutils|dpkg|init-system-helpers|init|initscripts|insserv|login|lsb-base|mawk|opensysusers|passwd|perl|perl-base|perl-modules-.*|sensible-utils|sysuser-helper|sysvinit-utils|systemd|systemd-.*|libsystemd-shared|tar|ucf|util-linux)$'

log() { printf '[%s] %s\n' "$PROG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2; }

suites_for() {
  local ver=$1 var="NESTJS_SPOE_HAPROXY_SUITES_${1//./_}"
  if [[ -n "${!var:-}" ]]; then printf '%s\n' "${!var}"; return 0; fi
  case "$ver" in
    2.6) echo "bookworm bookworm-updates bookworm-security" ;;
    3.0) echo "trixie trixie-updates trixie-security" ;;
    3.2) echo "sid" ;;
    3.4) echo "sid experimental" ;;
    *) return 1 ;;
  esac
}

check_tools() {
  local t
  for t in apt-get apt-cache dpkg dpkg-deb; do
    command -v "$t" >/dev/null 2>&1 || die "'$t' not found: this script needs a Debian/Ubuntu host with apt (apt-get, apt-cache) and dpkg"
  done
  [[ -r "$KEYRING" ]] || die "Debian archive keyring not readable: $KEYRING (install debian-archive-keyring or set NESTJS_SPOE_DEBIAN_KEYRING)"
}

# wrapper_ok DIR -> 0 if DIR/haproxy runs "-v" successfully
wrapper_ok() {
  [[ -x "$1/haproxy" ]] && "$1/haproxy" -v >/dev/null 2>&1
}

# ---------------------------------------------------------------- apt helpers
# All apt calls use only the private config in $APTDIR.
APTDIR=""
apt_opts() {
  local arch; arch=$(dpkg --print-architecture)
  APT_OPTS=(
    -o "Dir::Etc::SourceList=$APTDIR/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::Etc::Preferences=/dev/null"
    -o "Dir::Etc::PreferencesParts=/dev/null"
    -o "Dir::State=$APTDIR/state"
    -o "Dir::State::Lists=$APTDIR/lists"
    -o "Dir::State::status=/dev/null"
    -o "Dir::State::extended_states=$APTDIR/state/extended_states"
    -o "Dir::Cache=$APTDIR/cache"
    -o "Dir::Cache::Archives=$APTDIR/cache/archives"
    -o "Dir::Cache::pkgcache=$APTDIR/cache/pkgcache.bin"
    -o "Dir::Cache::srcpkgcache=$APTDIR/cache/srcpkgcache.bin"
    -o "Dir::Log=$APTDIR/log"
    -o "APT::Architecture=$arch"
    -o "APT::Architectures=$arch"
    -o "Acquire::Languages=none"
    -o "APT::Sandbox::User=root"
  )
}
papt_get()   { apt-get   "${APT_OPTS[@]}" "$@"; }
papt_cache() { apt-cache "${APT_OPTS[@]}" "$@"; }

# run CMD... with its output captured in $LOGF; dump the tail on failure
run_logged() {
  if ! "$@" >>"$LOGF" 2>&1; then
    log "command failed: $*"
    tail -n 25 "$LOGF" | sed 's/^/    /' >&2
    return 1
  fi
}

# Choose one package per dependency group from `apt-cache depends` output
# (first non-denied alternative; virtual -> first non-denied provider).
# Prints chosen package names; also prints "@ <name>" for every package header.
pick_deps() {
  awk -v denyre="$DENY_RE" '
    function denied(x) { return x ~ denyre }
    function finalize(   i, p, k, parts) {
      if (n == 0) return
      for (i = 1; i <= n; i++) {
        if (denied(name[i])) continue
        if (!virt[i]) { print name[i]; n = 0; return }
        k = split(prov[i], parts, " ")
        for (p = 1; p <= k; p++) if (!denied(parts[p])) { print parts[p]; n = 0; return }
      }
      for (i = 1; i <= n; i++) if (!denied(name[i])) { print "! " name[i]; break }
      n = 0
    }
    /^[^ ]/ { finalize(); cont = 0; hdr = $1; sub(/:.*/, "", hdr); print "@ " hdr; next }
    /^ [ |](Pre)?Depends: / {
      if (!cont) finalize()
      cont = (substr($0, 2, 1) == "|")
      nm = $2; v = 0
      if (nm ~ /^</) { v = 1; gsub(/[<>]/, "", nm) }
      sub(/:.*/, "", nm)
      n++; name[n] = nm; virt[n] = v; prov[n] = ""
      next
    }
    /^    [^ ]/ { if (n > 0) { p = $1; sub(/:.*/, "", p); prov[n] = prov[n] " " p }; next }
    END { finalize() }
  '
}

# ------------------------------------------------------------- provisioning
TMPDIRS=()
cleanup() {
  local d
  for d in "${TMPDIRS[@]+"${TMPDIRS[@]}"}"; do [[ -n "$d" && -d "$d" ]] && rm -rf -- "$d"; done
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

provision() {
  local ver=$1 force=$2
  local dest="$HAPROXY_CACHE/$ver"
  local suites d
  # (re)install traps: provision() may run in a subshell, which does not inherit them
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  [[ "$ver" =~ ^[0-9]+\.[0-9]+$ ]] || die "version must be major.minor (e.g. 3.4), got '$ver'"
  suites=$(suites_for "$ver") || die "unsupported HAProxy version '$ver' (supported: ${DEFAULT_VERSIONS[*]}; or set NESTJS_SPOE_HAPROXY_SUITES_${ver//./_}=\"<debian suites>\")"

  mkdir -p "$HAPROXY_CACHE"

  if [[ "$force" != 1 ]] && wrapper_ok "$dest"; then
    log "$ver: cached at $dest/haproxy ($("$dest/haproxy" -v 2>/dev/null | sed -n 1p))"
    return 0
  fi

  # one provisioning per version at a time (concurrent runs wait)
  local lockfd
  exec {lockfd}>"$HAPROXY_CACHE/.$ver.lock"
  if command -v flock >/dev/null 2>&1; then
    log "$ver: acquiring lock $HAPROXY_CACHE/.$ver.lock"
    flock "$lockfd"
    if [[ "$force" != 1 ]] && wrapper_ok "$dest"; then
      log "$ver: provisioned meanwhile by another run: $dest/haproxy"
      exec {lockfd}>&-
      return 0
    fi
  fi
  # leftovers of interrupted runs (we hold the lock, so they are dead)
  rm -rf -- "$HAPROXY_CACHE/.tmp.$ver."* 2>/dev/null || true

  local work; work=$(mktemp -d "$HAPROXY_CACHE/.tmp.$ver.XXXXXX")
  TMPDIRS+=("$work")
  APTDIR="$work/apt"; LOGF="$work/apt.log"
  local stage="$work/$ver" root="$work/$ver/root" debs="$work/debs"
  mkdir -p "$APTDIR"/{lists/partial,cache/archives/partial,state,log} "$debs" "$root"
  : >"$LOGF"
  apt_opts

  # private sources list
  local s uri
  for s in $suites; do
    if [[ "$s" == *-security ]]; then uri=$SECURITY_MIRROR; else uri=$MIRROR; fi
    echo "deb [signed-by=$KEYRING] $uri $s main"
  done >"$APTDIR/sources.list"
  log "$ver: apt update (private config, suites: $suites)"
  run_logged papt_get update || die "$ver: apt-get update failed for suites '$suites'"

  # resolve exact version: highest candidate matching <ver>.*
  local v best=""
  while read -r v; do
    [[ "$v" =~ ^([0-9]+:)?${ver//./\\.}\. ]] || continue
    if [[ -z "$best" ]] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
  done < <(papt_cache madison haproxy 2>>"$LOGF" | awk -F'|' '{gsub(/ /, "", $2); print $2}')
  [[ -n "$best" ]] || die "$ver: no haproxy $ver.x found in suites '$suites' (available: $(papt_cache madison haproxy 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); printf "%s ", $2}'))"
  log "$ver: resolved haproxy=$best"

  # resolve runtime dependencies breadth-first (one apt-cache call per level)
  declare -A seen=([haproxy]=1)
  local -a level=("haproxy=$best") next pkgs=(haproxy) unsat=()
  local line name
  while ((${#level[@]})); do
    next=()
    while read -r line; do
      case "$line" in
        "@ "*) continue ;;
        "! "*) unsat+=("${line#! }"); continue ;;
      esac
      name=$line
      [[ -n "${seen[$name]:-}" ]] && continue
      seen[$name]=1; pkgs+=("$name"); next+=("$name")
    done < <(papt_cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
               --no-replaces --no-enhances "${level[@]}" 2>>"$LOGF" | pick_deps)
    level=("${next[@]+"${next[@]}"}")
  done
  ((${#unsat[@]} == 0)) || log "$ver: WARNING: unresolvable dependencies ignored: ${unsat[*]}"
  log "$ver: ${#pkgs[@]} packages to fetch: ${pkgs[*]}"

  # download (all at once; fall back to one by one and tolerate non-libraries)
  local -a specs=("haproxy=$best")
  local p
  for name in "${pkgs[@]}"; do [[ "$name" == haproxy ]] || specs+=("$name"); done
  log "$ver: apt-get download (${#specs[@]} packages) into temp dir"
  if ! (cd "$debs" && papt_get download "${specs[@]}" >>"$LOGF" 2>&1); then
    log "$ver: batch download failed, retrying package by package"
    for p in "${specs[@]}"; do
      ls "$debs/${p%%=*}_"*.deb >/dev/null 2>&1 && continue
      if ! (cd "$debs" && papt_get download "$p" >>"$LOGF" 2>&1); then
        case "$p" in
          haproxy*|lib*) tail -n 15 "$LOGF" | sed 's/^/    /' >&2; die "$ver: cannot download required package '$p'" ;;
          *) log "$ver: WARNING: skipping '$p' (download failed, not a library)" ;;
        esac
      fi
    done
  fi

  local deb
  local -a debfiles=("$debs"/*.deb)
  log "$ver: unpacking ${#debfiles[@]} .deb files with dpkg -x"
  for deb in "${debfiles[@]}"; do dpkg -x "$deb" "$root" || die "$ver: dpkg -x failed for $deb"; done
  [[ -x "$root/usr/sbin/haproxy" ]] || die "$ver: $root/usr/sbin/haproxy missing after unpack"

  # locate the private dynamic loader and library dirs (relative to root)
  local ldso libc_dir multiarch
  ldso=$(cd "$root" && find . -name 'ld-linux*.so.*' -type f -print | sed 's|^\./||' | sort | head -n 1)
  [[ -n "$ldso" ]] || die "$ver: no ld-linux*.so.* found in unpacked libc6"
  libc_dir=$(cd "$root" && find . -name 'libc.so.6' \( -type f -o -type l \) -print | sed 's|^\./||' | head -n 1)
  [[ -n "$libc_dir" ]] || die "$ver: no libc.so.6 found in unpacked libc6"
  multiarch=$(basename "$(dirname "$libc_dir")")
  local -a libdirs=()
  for d in "usr/lib/$multiarch" "lib/$multiarch"; do
    [[ -d "$root/$d" && ! -L "$root/$d" ]] && libdirs+=("$d")
  done
  log "$ver: loader ROOT/$ldso, library dirs: ${libdirs[*]/#/ROOT/}"

  # wrapper (paths relative to its own location, so the dir can be renamed)
  local libpath_expr="" osslmods=""
  for d in "${libdirs[@]}"; do libpath_expr+="${libpath_expr:+:}\$R/$d"; done
  [[ -d "$root/usr/lib/$multiarch/ossl-modules" ]] && osslmods="usr/lib/$multiarch/ossl-modules"
  # shellcheck disable=SC2016 # $-expressions are meant for the wrapper
  {
    echo '#!/bin/sh'
    echo "# HAProxy $best (Debian: $suites) - generated by scripts/provision-haproxy.sh"
    echo '# Runs the private binary with its private glibc/libraries; args are passed through.'
    echo 'self=$(readlink -f -- "$0" 2>/dev/null) || self=$0'
    echo 'R=$(dirname -- "$self")/root'
    [[ -n "$osslmods" ]] && echo ": \"\${OPENSSL_MODULES:=\$R/$osslmods}\"; export OPENSSL_MODULES"
    echo "exec \"\$R/$ldso\" --inhibit-cache --library-path \"$libpath_expr\" --argv0 \"\$self\" \"\$R/usr/sbin/haproxy\" \"\$@\""
  } >"$stage/haproxy"
  chmod 0755 "$stage/haproxy"

  # SPOE.txt
  local docdir="$root/usr/share/doc/haproxy"
  if [[ -f "$docdir/SPOE.txt.gz" ]]; then
    gzip -dc "$docdir/SPOE.txt.gz" >"$stage/SPOE.txt"
  elif [[ -f "$docdir/SPOE.txt" ]]; then
    cp "$docdir/SPOE.txt" "$stage/SPOE.txt"
  else
    log "$ver: note: package does not ship doc/SPOE.txt"
  fi

  # verification: every shared object must come from the private root
  log "$ver: verifying library resolution"
  local libpath_abs="" listing
  for d in "${libdirs[@]}"; do libpath_abs+="${libpath_abs:+:}$root/$d"; done
  listing=$("$root/$ldso" --inhibit-cache --library-path "$libpath_abs" --list "$root/usr/sbin/haproxy" 2>&1) \
    || { printf '%s\n' "$listing" | sed 's/^/    /' >&2; die "$ver: private loader cannot load haproxy"; }
  if grep -q 'not found' <<<"$listing"; then
    grep 'not found' <<<"$listing" | sed 's/^/    /' >&2
    die "$ver: shared libraries missing from the private root"
  fi
  local leaks
  leaks=$(awk '/=>/ && $3 ~ /^\// {print $3}' <<<"$listing" | grep -v -F "$root/" || true)
  if [[ -n "$leaks" ]]; then
    printf '%s\n' "$leaks" | sed 's/^/    /' >&2
    die "$ver: some libraries resolve outside the private root"
  fi
  local vline
  vline=$("$stage/haproxy" -v 2>&1 | sed -n 1p) || die "$ver: wrapper does not run: $vline"
  [[ "$vline" == *"version $ver."* ]] || die "$ver: unexpected version output: $vline"

  {
    echo "haproxy=$best"
    echo "suites=$suites"
    echo "provisioned=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "packages:"
    for deb in "$debs"/*.deb; do
      dpkg-deb -f "$deb" Package Version | paste -sd' ' | sed 's/^Package: /  /; s/ Version: /=/'
    done
  } >"$stage/VERSION"

  # atomic switch
  if [[ -e "$dest" ]]; then
    local old="$HAPROXY_CACHE/.tmp.$ver.old.$$"
    mv -- "$dest" "$old"; TMPDIRS+=("$old")
  fi
  mv -- "$stage" "$dest"
  rm -rf -- "$work"
  exec {lockfd}>&-
  log "$ver: provisioned $dest/haproxy -> $("$dest/haproxy" -vv 2>&1 | sed -n 1p)"
}

# --------------------------------------------------------------------- main
main() {
  local force=0 print_path="" arg
  local -a versions=()
  while (($#)); do
    arg=$1; shift
    case "$arg" in
      -h|--help) usage; exit 0 ;;
      --force) force=1 ;;
      --print-path)
        (($#)) || die "--print-path needs a VERSION"
        print_path=$1; shift ;;
      --print-path=*) print_path=${arg#*=} ;;
      -*) die "unknown option '$arg' (see --help)" ;;
      *) versions+=("$arg") ;;
    esac
  done
  check_tools

  if [[ -n "$print_path" ]]; then
    ((${#versions[@]} == 0)) || die "--print-path takes exactly one VERSION"
    provision "$print_path" "$force"
    printf '%s\n' "$HAPROXY_CACHE/$print_path/haproxy"
    return 0
  fi

  ((${#versions[@]})) || versions=("${DEFAULT_VERSIONS[@]}")
  local v rc failed=()
  for v in "${versions[@]}"; do
    # each version in a subshell: a failure is reported, the others still run.
    # (not "if ! (...)": errexit would be disabled inside the subshell)
    set +e
    (set -e; provision "$v" "$force")
    rc=$?
    set -e
    ((rc == 0)) || failed+=("$v")
  done
  if ((${#failed[@]})); then
    die "could not provision HAProxy version(s): ${failed[*]}"
  fi
  log "done: ${versions[*]} -> $HAPROXY_CACHE/<version>/haproxy"
}

main "$@"
