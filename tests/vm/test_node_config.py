"""Node configuration on a booted node: seed volume at first boot, `maculaos config apply`
without reboot (an invalid config.yaml across a reboot: test_node_reboot.py)."""

from __future__ import annotations

import json
import subprocess

import pytest

from maculaos_build import vm as vmlib
from tests.vm.conftest import second_key
from tests.vm.test_node import host

pytestmark = pytest.mark.vm


def test_seed_volume_configured_the_first_boot(node: vmlib.VM) -> None:
    h = host(node)
    assert h.check_output("readlink /etc/localtime").endswith("zoneinfo/Europe/Berlin")
    assert "Europe/Berlin" in h.check_output("timedatectl show -p Timezone --value")
    assert 'XKBLAYOUT="de"' in h.file("/etc/default/keyboard").content_string
    assert "LANG=de_DE.UTF-8" in h.file("/etc/locale.conf").content_string
    assert "de_DE.utf8" in h.check_output("locale -a")
    labels = h.file("/etc/rancher/k3s/config.yaml.d/50-maculaos-labels.yaml").content_string
    assert '"macula.io/site=vm-lab"' in labels
    with h.sudo():
        seeded = h.file("/etc/maculaos/seeded.txt")
        assert seeded.content_string == "seeded by the MACULAOS_CONFIG volume\n"
        assert seeded.mode == 0o640
    with h.sudo():
        assert h.file("/var/lib/maculaos/config.yaml").mode == 0o600
    # the key from the seed config logs in
    r = subprocess.run(
        [
            "ssh",
            *vmlib.SSH_OPTS,
            # only this key: one the build key's agent or ~/.ssh holds must not log in for it
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-i",
            str(second_key()),
            "-p",
            str(node.port),
            "macula@127.0.0.1",
            "echo",
            "seed-key-ok",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert r.stdout.strip() == "seed-key-ok", r.stderr


def test_apply_without_reboot_then_no_change(node: vmlib.VM) -> None:
    h = host(node)
    h.check_output("sudo sed -i 's|Europe/Berlin|Asia/Tokyo|' /var/lib/maculaos/config.yaml")
    out = h.check_output("sudo maculaos config apply")
    assert "changed: timezone: Asia/Tokyo" in out
    assert "Asia/Tokyo" in h.check_output("timedatectl show -p Timezone --value")
    assert h.check_output("sudo maculaos config apply") == "no change"
    status = json.loads(h.check_output("sudo maculaos config status --json"))
    assert status["errors"] == []
