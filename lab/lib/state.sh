# shellcheck shell=bash
# Where the lab keeps its state. MariaDB, RabbitMQ and Swift run as their own users (mysql,
# rabbitmq, swift) and open their files under $LAB: every directory above $LAB must let them
# through. A clone in a home directory that others cannot enter (root's is drwx------ on Debian)
# does not, so up.sh keeps the state under $LAB_STATE_BASE instead and links it from $LAB.
# And which processes belong to another lab (lab_foreign), for up.sh's clean-up of leftovers.
# Sourced by up.sh after common.sh (common.sh follows that link).

LAB_STATE_BASE=${LAB_STATE_BASE:-/var/lib/stackrun}
LAB_SERVICE_USERS=${LAB_SERVICE_USERS:-mysql rabbitmq swift}

# as_user USER CMD...: run CMD as USER (its group and supplementary groups, as labctl does).
as_user() {
  local u=$1
  shift
  /usr/bin/setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups -- "$@"
}

# lab_blocked DIR USER...: for the first USER (of those that exist) that cannot reach DIR
# (search permission on DIR and on every directory above it), print "USER PATH": PATH is the
# first directory on the way that USER cannot pass. Nothing when every USER gets through.
lab_blocked() {
  local dir=$1 u p part parts
  shift
  for u in "$@"; do
    id -u "$u" >/dev/null 2>&1 || continue
    as_user "$u" test -x "$dir" && continue
    p=""
    IFS=/ read -ra parts <<<"$dir"
    for part in "${parts[@]}"; do
      [[ -n $part ]] || continue
      p+=/$part
      as_user "$u" test -x "$p" || break
    done
    echo "$u ${p:-/}"
    return 0
  done
}

# lab_place_state: make sure the service users can reach $LAB. If they cannot and $LAB is new
# (absent or an empty directory), keep the state in $LAB_STATE_BASE/lab-<hash of $LAB>, make $LAB
# a symlink to it and set LAB to it. An existing lab in an unreachable place is refused with what
# to do: moving live state (mounted disks, a datadir) is not something to do behind its back.
lab_place_state() {
  local probe blocked u p mode target
  probe=$LAB
  while [[ ! -e $probe ]]; do probe=$(dirname "$probe"); done
  # shellcheck disable=SC2086 # a list of user names
  blocked=$(lab_blocked "$probe" $LAB_SERVICE_USERS)
  [[ -n $blocked ]] || return 0
  read -r u p <<<"$blocked"
  mode=$(stat -c '%A %U:%G' "$p")
  if [[ -e $LAB && ! (-d $LAB && -z $(ls -A "$LAB")) ]]; then
    die "the lab's state $LAB cannot be reached by user $u: $p is $mode.
  MariaDB, RabbitMQ and Swift run as the users $LAB_SERVICE_USERS and open their files there.
  Fix one of:
    lab/down.sh --purge, then run again: up.sh then keeps new state in $LAB_STATE_BASE, linked from $LAB
    let them through: chmod o+x $p   (or: setfacl -m u:mysql:x,u:rabbitmq:x,u:swift:x $p)
    STACKRUN_LAB_DIR=<a directory they can reach>"
  fi
  [[ -d $LAB ]] && rmdir "$LAB"
  target=$LAB_STATE_BASE/lab-$(printf '%s' "$LAB" | sha256sum | cut -c1-12)
  mkdir -p "$target" "$(dirname "$LAB")"
  chmod 755 "$LAB_STATE_BASE" "$target"
  # shellcheck disable=SC2086
  blocked=$(lab_blocked "$target" $LAB_SERVICE_USERS)
  [[ -z $blocked ]] || die "the lab's state cannot be kept in $target either (user ${blocked% *} cannot pass ${blocked#* }): set STACKRUN_LAB_DIR or LAB_STATE_BASE to a directory the users $LAB_SERVICE_USERS can reach"
  printf '%s\n' "$LAB" >"$target/.origin"
  ln -sfn "$target" "$LAB"
  say "user $u cannot reach $LAB ($p is $mode): the lab's state is in $target, linked from $LAB"
  LAB=$target
}

# lab_foreign PID: the state directory of the other lab whose labctl started PID, or nothing.
# labctl starts every daemon with LAB_HOST and STACKRUN_LAB_DIR (the real path) in a clean
# environment; STACKRUN_LAB_DIR alone does not make a lab process: the Makefile exports it to
# everything make runs (tests, other tools of other clones), and those are not ours to kill.
lab_foreign() {
  local env dir
  pid_alive "$1" || return 0
  env=$(tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null || true)
  grep -q '^LAB_HOST=' <<<"$env" || return 0
  dir=$(sed -n 's/^STACKRUN_LAB_DIR=//p' <<<"$env" | head -1)
  [[ -n $dir && $dir != "$LAB" && $dir != "${LAB_LINK:-}" ]] || return 0
  [[ $(readlink -f "$dir" 2>/dev/null) != "$LAB" ]] || return 0
  printf '%s\n' "$dir"
}
