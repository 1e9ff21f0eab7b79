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
# true when an Ethernet interface backed by a device is there (identity.primary_interface)
physical_interface() {
  for dev in "$sysfs_net"/*/device; do
    [ -e "$dev" ] && [ "$(cat -- "${dev%/device}/type" 2>/dev/null)" = 1 ] && return 0
  done
  return 1
}
# (a node config that is not a regular file -- a FIFO, a device -- could block sha256sum:
# Python reports it instead)
# The primary interface's address counts (the hostname is made from it: a disk moved to another
# machine is a full apply) when its interface is there. Early in the boot its driver may not be
# loaded yet, or udev not yet have renamed it: then the address the last apply saw stands in,
# instead of every boot finding "no interface" and applying in full (issue 10).
if [ -r "$state/config-fastpath" ] && { [ ! -e "$node" ] || [ -f "$node" ]; } &&
   read -r want mac_file mac_seen < "$state/config-fastpath" &&
   [ -n "$want" ] && [ -n "$mac_seen" ] &&
   { mac_now=$(cat -- "$mac_file" 2>/dev/null) || mac_now=$mac_seen; } &&
   { [ "$mac_seen" != "-" ] || ! physical_interface; } &&
   [ "$(sh "$here/fingerprint.sh" "$node" "$image" "$cmdline" "$mac_now" "$here/applicators.py")" = "$want" ]; then
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
