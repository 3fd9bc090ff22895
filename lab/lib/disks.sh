# shellcheck shell=bash
# Loop-backed XFS devices of the Swift storage nodes. Sourced after common.sh.

DISK_SIZE=512M

# mounted_dev MOUNTPOINT: the source device of MOUNTPOINT per /proc/self/mounts (empty if none).
# (`mountpoint` calls a shut-down XFS "not mounted"; /proc/self/mounts knows better.)
mounted_dev() { awk -v m="$1" '$2 == m {d = $1} END {if (d) print d}' /proc/self/mounts; }

# loop_of_image IMG: loop devices whose backing file is IMG.
loop_of_image() { losetup -n -O NAME -j "$1" 2>/dev/null || true; }

# disk_healthy MOUNTPOINT: the filesystem answers (not shut down: EIO).
disk_healthy() { timeout 5 ls "$1" >/dev/null 2>&1; }

# dev_link NAME LOOP: /dev/NAME -> LOOP (never touches a real device of that name).
dev_link() {
  if [[ -e /dev/$1 && ! -L /dev/$1 ]]; then
    die "/dev/$1 exists and is not a lab symlink: refusing to shadow a real device"
  fi
  ln -sfn "$2" "/dev/$1"
}

# ensure_disk HOST DEV: image exists, has XFS, is mounted at its mount point, owned by swift.
ensure_disk() {
  local h=$1 dev=$2 d img mp loop src
  d=$(hostdir "$h")
  img=$d/disks/$dev.img mp=$d/srv/node/$dev
  mkdir -p "$d/disks" "$mp"
  src=$(mounted_dev "$mp")
  if [[ -n $src ]]; then
    [[ $src == /dev/loop* ]] && dev_link "$dev" "$src"
    disk_healthy "$mp" || warn "$h/$dev at $mp is mounted but gives I/O errors (failed disk left by a test?): replace it with lab/bin/labfail disk-replace $h $dev"
    return 0
  fi
  # a "new disk" from labfail disk-new (attached, not mounted) waits for a runbook: leave it alone
  if [[ -L /dev/$dev && -f $img ]] && losetup -n -O BACK-FILE "$(readlink "/dev/$dev")" 2>/dev/null | grep -qx "$img"; then
    warn "$h/$dev: new disk $(readlink "/dev/$dev") is attached but not mounted (a replacement in progress?): leaving it"
    return 0
  fi
  if [[ ! -f $img ]]; then
    truncate -s "$DISK_SIZE" "$img"
  fi
  if [[ $(blkid -p -o value -s TYPE "$img" 2>/dev/null || true) != xfs ]]; then
    mkfs.xfs -q -f -L "$dev" "$img"
  fi
  loop=$(losetup -f --show "$img")
  mount -t xfs "$loop" "$mp"
  losetup -d "$loop" # autoclear: the loop device goes away with the unmount
  chown swift:swift "$mp"
  dev_link "$dev" "$loop"
  say "$h/$dev: $img on $loop mounted at $mp"
}
