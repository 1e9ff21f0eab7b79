#!/bin/sh
# The config fingerprint: one sha256 over everything that feeds the effective config.
#   fingerprint.sh NODE_CONFIG IMAGE_DEFAULTS CMDLINE MAC_ADDRESS_FILE APPLICATORS_PY
# A missing file shows as sha256sum's error line. The one implementation, used by Python when
# it records an apply and by boot.sh when it decides whether a boot needs one; few processes,
# because at boot every fork counts.
# The command line counts without maculaos.esp=: it names the ESP's GUID, which a node's first
# boot replaces (docs/decisions/0008), and it is a boot word, not config. Everything else on
# it, the slot included, counts.
export LC_ALL=C
{
  sha256sum -- "$1" "$2" "$4" "$5"
  if [ -r "$3" ]; then
    sed -e 's/[[:space:]][[:space:]]*/ /g' -e 's/\(^\| \)maculaos\.esp=[^ ]*//g' -e 's/^ //' \
      -- "$3" | sha256sum
  else
    echo "no command line at $3"
  fi
} 2>&1 | sha256sum | cut -c1-64
