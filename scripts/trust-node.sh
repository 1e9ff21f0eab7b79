#!/usr/bin/env bash
# Trust a node's SSH host key for the fleet, on first contact, by the fingerprint the node
# shows on its console and login banner (the "SSH host key fingerprints" lines):
#
#   scripts/trust-node.sh [-i INVENTORY_DIR] [-p PORT] HOST SHA256:FINGERPRINT
#
# The key HOST offers is compared with FINGERPRINT; only a matching key is added to
# INVENTORY_DIR/.known_hosts (default: inventories/edge), the file the edge inventory makes SSH
# check strictly. A mismatch adds nothing: someone else may be answering on that address.
set -euo pipefail
inventory="$(dirname "$0")/../inventories/edge"
port=22
usage() { echo "usage: $0 [-i INVENTORY_DIR] [-p PORT] HOST SHA256:FINGERPRINT" >&2; exit 2; }
while getopts "i:p:h" opt; do
  case "$opt" in
    i) inventory=$OPTARG ;;
    p) port=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || usage
host=$1 want=$2
case "$want" in
  SHA256:?*) ;;
  *) echo "trust-node: '$want' is not a SHA256:... fingerprint (copy it from the node's console)" >&2; exit 2 ;;
esac
[[ "$port" =~ ^[0-9]{1,5}$ ]] && port=$((10#$port)) && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] \
  || { echo "trust-node: port '$port' is not a number from 1 to 65535" >&2; exit 2; }
# a host name or address, one of them (no options, lists or patterns for ssh-keyscan)
[[ "$host" =~ ^[A-Za-z0-9][A-Za-z0-9._:-]*$ ]] \
  || { echo "trust-node: '$host' is not a host name or address" >&2; exit 2; }
[ -d "$inventory" ] || { echo "trust-node: no inventory directory $inventory" >&2; exit 2; }
known="$inventory/.known_hosts"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if ! timeout 30 ssh-keyscan -T 10 -p "$port" -t ed25519,ecdsa,rsa -- "$host" >"$tmp/offered" 2>/dev/null \
   || [ ! -s "$tmp/offered" ]; then
  echo "trust-node: $host:$port did not answer with an SSH host key (is the node up and reachable?)" >&2
  exit 1
fi
: >"$tmp/match"
while read -r line; do
  [ -n "$line" ] || continue
  printf '%s\n' "$line" >"$tmp/one"
  fp=$(ssh-keygen -l -f "$tmp/one" | awk '{print $2}')
  if [ "$fp" = "$want" ]; then printf '%s\n' "$line" >>"$tmp/match"; fi
done <"$tmp/offered"
if [ ! -s "$tmp/match" ]; then
  echo "trust-node: $host:$port offered a different key; nothing trusted. It offered:" >&2
  ssh-keygen -l -f "$tmp/offered" | awk '{print "  " $NF " " $2}' >&2
  echo "  compare with the fingerprints on the node's console; if they differ, someone else answers on $host" >&2
  exit 1
fi
name=$host; [ "$port" = 22 ] || name="[$host]:$port"
touch "$known"
if [ -s "$known" ]; then ssh-keygen -R "$name" -f "$known" >/dev/null 2>&1 || true; rm -f "$known.old"; fi
cat "$tmp/match" >>"$known"
echo "trusted $name ($want) in $known"
