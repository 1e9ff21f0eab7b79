#!/bin/sh
# The config fingerprint: one sha256 over everything that feeds the effective config.
#   fingerprint.sh NODE_CONFIG IMAGE_DEFAULTS CMDLINE MAC_ADDRESS_FILE APPLICATORS_PY
# A missing file counts as "<absent>". The one implementation, used by Python when it
# records an apply and by boot.sh when it decides whether a boot needs one.
for f in "$@"; do
  if [ -r "$f" ]; then sha256sum < "$f"; else echo "<absent>" | sha256sum; fi
done | sha256sum | cut -d' ' -f1
