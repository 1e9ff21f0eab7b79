#!/bin/sh
# The config fingerprint: one sha256 over everything that feeds the effective config.
#   fingerprint.sh NODE_CONFIG IMAGE_DEFAULTS CMDLINE MAC_ADDRESS_FILE APPLICATORS_PY
# A missing file shows as sha256sum's error line. The one implementation, used by Python when
# it records an apply and by boot.sh when it decides whether a boot needs one; few processes,
# because at boot every fork counts.
LC_ALL=C sha256sum -- "$@" 2>&1 | sha256sum | cut -c1-64
