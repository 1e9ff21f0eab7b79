#!/bin/sh
# maculaos-config.service. When nothing that feeds the config changed since the last clean
# apply (the config files, the kernel command line -- slot included --, the primary MAC, the
# applicators), there is nothing to do: applied settings persist in /etc and systemd loads
# them. That check costs a few sha256sums; only a change starts Python.
here=$(dirname "$0")
state=${MACULAOS_STATE:-/var/lib/maculaos/state}
node=${MACULAOS_NODE_CONFIG:-/var/lib/maculaos/config.yaml}
image=${MACULAOS_IMAGE_DEFAULTS:-/usr/lib/maculaos/config.yaml}
cmdline=${MACULAOS_CMDLINE:-/proc/cmdline}
sysfs_net=${MACULAOS_SYSFS_NET:-/sys/class/net}
# The primary interface's address counts (the hostname is made from it: a disk moved to another
# machine is a full apply). Early in the boot the interface may not be there yet (its driver not
# loaded, udev not yet done renaming it): the address the last apply saw stands while no
# interface is there, or while one of those there has it. An interface that has another
# address, where the last apply saw that one or none, is a full apply. Physical interfaces as
# identity.primary_interface counts them: backed by a device, Ethernet, a nonzero address.
# (Until issue 10 this read the address file the last apply had used: under emulation the
# interface appeared ~30 s after this unit started, and every boot applied in full.)
address_now() {
  first=
  for dev in "$sysfs_net"/*/device; do
    [ -e "$dev" ] || continue
    read -r type < "${dev%/device}/type" 2>/dev/null && [ "$type" = 1 ] || continue
    read -r addr < "${dev%/device}/address" 2>/dev/null || continue
    case $addr in ""|00:00:00:00:00:00) continue ;; esac
    [ "$addr" = "$1" ] && { echo "$addr"; return; }
    first=${first:-$addr}
  done
  echo "${first:-$1}"
}
# The record is a short line in a regular file; anything else (a FIFO, a huge file) is a full
# apply, read at most 256 bytes of.
record=
[ -f "$state/config-fastpath" ] && record=$(head -c 256 -- "$state/config-fastpath" 2>/dev/null)
want=${record%% *}
mac_seen=${record#* }
mac_seen=${mac_seen%%[!0-9a-f:-]*}
# (a node config that is not a regular file -- a FIFO, a device -- could block sha256sum:
# Python reports it instead)
if [ "${#want}" -eq 64 ] && [ -n "$mac_seen" ] && [ "$record" = "$want $mac_seen" ] &&
   { [ ! -e "$node" ] || [ -f "$node" ]; } &&
   [ "$(sh "$here/fingerprint.sh" "$node" "$image" "$cmdline" "$(address_now "$mac_seen")" "$here/applicators.py")" = "$want" ]; then
  echo "config unchanged since the last apply; its settings persist in /etc"
  exit 0
fi
# A full apply is bounded (the unit's TimeoutStartSec= is the backstop): a hung modprobe or
# run_cmd must not hold the boot. Stopped, it leaves the settings each applicator had already
# written (each file atomically), promotes nothing and records no clean fingerprint, so the next
# boot tries again; the unit still succeeds, so the boot and its health check go on.
limit=${MACULAOS_APPLY_TIMEOUT:-80}
timeout -k 5 "$limit" "${MACULAOS_BIN:-/usr/bin/maculaos}" config apply --boot
rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  msg="maculaos config apply did not finish within ${limit}s and was stopped; see: journalctl -b -u maculaos-config"
  echo "$msg" >&2
  { mkdir -p "$state" && echo "$msg" > "$state/config-timeout"; } 2>/dev/null  # for `config status`
  run=${MACULAOS_RUN:-/run}
  for banner in "$run/motd.d/50-maculaos-config" "$run/issue.d/50-maculaos-config.issue"; do
    mkdir -p "${banner%/*}" && printf '\n*** MaculaOS: %s ***\n\n' "$msg" > "$banner"
  done 2>/dev/null
  exit 0
fi
exit "$rc"
