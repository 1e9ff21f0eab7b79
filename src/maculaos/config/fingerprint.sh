#!/bin/sh
# The config fingerprint: one sha256 over everything that feeds the effective config.
#   fingerprint.sh NODE_CONFIG IMAGE_DEFAULTS CMDLINE PRIMARY_MAC APPLICATORS_PY
# PRIMARY_MAC is the address itself ("-" for none): the interface's sysfs file may not exist yet
# when the boot asks (its driver loads later, it is renamed later), and boot.sh decides what
# stands in for it then.
# A missing file shows as sha256sum's error line. The one implementation, used by Python when
# it records an apply and by boot.sh when it decides whether a boot needs one; few processes,
# because at boot every fork counts.
# The command line counts without maculaos.esp=: it names the ESP's GUID, which a node's first
# boot replaces (docs/decisions/0008), and it is a boot word, not config. Everything else on
# it, the slot included, counts.
export LC_ALL=C
{
  sha256sum -- "$1" "$2" "$5"
  printf 'primary MAC %s\n' "$4"
  if [ -r "$3" ]; then
    sed -e 's/[[:space:]][[:space:]]*/ /g' -e 's/\(^\| \)maculaos\.esp=[^ ]*//g' -e 's/^ //' \
      -- "$3" | sha256sum
  else
    echo "no command line at $3"
  fi
} 2>&1 | sha256sum | cut -c1-64
