"""Node A across one reboot, after test_node.py and test_node_config.py checked its first boot
(pytest collects this file after them). Everything a reboot must carry or change is set up
first, then the node reboots once, into slot B, as after an update:

- files in /etc and /var survive, /tmp does not, the node's identity stays;
- slot B (slot A copied, made primary through RAUC's GRUB backend) is booted and confirmed;
- an invalid config.yaml written before the reboot leaves the node on its last good config;
- through both boots the second MaculaOS disk on the bus was never mounted, grown or written.

One reboot for all four: each costs minutes under TCG, and none of them hides another (a
failure names what the node did not carry)."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest

from maculaos_build import vm as vmlib
from tests.support import powercut
from tests.vm.test_node import host

pytestmark = pytest.mark.vm

INVALID_CONFIG = "maculaos:\\n  upgrade: {channel: edge}\\n  timezone: Europe/Paris\\n"


@dataclass
class Before:
    token: str
    machine_id: str
    hostkey: str
    timezone: str


@pytest.fixture(scope="module")
def rebooted(node: vmlib.VM) -> Before:
    token = secrets.token_hex(8)
    node.ssh(
        "sudo",
        "sh",
        "-c",
        f"'echo {token} > /etc/maculaos-test && "
        f"echo {token} > /var/lib/maculaos-test && echo {token} > /tmp/maculaos-test'",
    )
    before = Before(
        token=token,
        machine_id=node.ssh("cat", "/etc/machine-id").strip(),
        hostkey=node.ssh("cat", "/etc/ssh/ssh_host_ed25519_key.pub").strip(),
        timezone=node.ssh("timedatectl", "show", "-p", "Timezone", "--value").strip(),
    )
    # an invalid config (a channel that does not exist) replaces the good one
    node.ssh("sudo", "sh", "-c", f"'printf \"{INVALID_CONFIG}\" > /var/lib/maculaos/config.yaml'")
    # slot A copied to B, and B made primary through RAUC's bootloader backend
    node.ssh(
        "sudo",
        "sh",
        "-c",
        # only the squashfs's bytes (its superblock's bytes_used), not the whole partition
        "'a=/dev/disk/by-partlabel/rootfs-a && "
        'n=$(od -An -t u8 -j 40 -N 8 $a | tr -d " ") && [ $n -gt 0 ] && '
        "dd if=$a of=/dev/disk/by-partlabel/rootfs-b bs=4M count=$n iflag=count_bytes "
        "conv=fsync status=none && "
        "rauc status mark-active other'",
    )
    node.reboot(timeout=900)
    powercut.settle(node)  # (waits again should the node reboot by itself)
    return before


def test_files_in_etc_and_var_survive_reboot(node: vmlib.VM, rebooted: Before) -> None:
    h = host(node)
    assert h.file("/etc/maculaos-test").content_string.strip() == rebooted.token
    assert h.file("/var/lib/maculaos-test").content_string.strip() == rebooted.token
    assert not h.file("/tmp/maculaos-test").exists
    # identity is made once, then kept
    assert h.file("/etc/machine-id").content_string.strip() == rebooted.machine_id
    assert h.file("/etc/ssh/ssh_host_ed25519_key.pub").content_string.strip() == rebooted.hostkey
    # the pair's record (what lets later boots skip ssh-keygen) holds what the keys hold, on
    # the new /etc layer slot B's first boot made
    keys = "/etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub"
    assert h.check_output("sudo cat /etc/ssh/.maculaos-hostkey-checked") == h.check_output(
        f"sudo cksum -- {keys}"
    )


def test_grub_environment_switched_to_slot_b(node: vmlib.VM, rebooted: Before) -> None:
    """Root came from rootfs-b, and the health gate confirmed it."""
    h = host(node)
    assert "rauc.slot=B" in h.file("/proc/cmdline").content_string
    root = h.check_output("findmnt -n -o SOURCE /")
    assert root == h.check_output("readlink -f /dev/disk/by-partlabel/rootfs-b")
    status = json.loads(h.check_output("sudo maculaos upgrade status --json"))
    assert status["booted"] == "B" and status["slots"]["B"]["state"] == "good", status
    assert status["last_health"]["healthy"], status["last_health"]
    # the node's /etc came along to slot B (merged: the same release, so kept as it was)
    assert h.file("/etc/maculaos-test").exists


def test_invalid_config_boots_on_last_good(node: vmlib.VM, rebooted: Before) -> None:
    h = host(node)
    # still on the last good config's time zone, not the invalid one's
    assert rebooted.timezone != "Europe/Paris"
    assert h.check_output("timedatectl show -p Timezone --value") == rebooted.timezone
    status = h.run("sudo maculaos config status")
    assert status.rc == 1
    assert "maculaos.upgrade.channel: 'edge' is not allowed" in status.stdout
    assert "maculaos.upgrade.channel" in h.file("/run/motd.d/50-maculaos-config").content_string
    assert (
        "maculaos.upgrade.channel" in h.file("/run/issue.d/50-maculaos-config.issue").content_string
    )
    journal = h.check_output("sudo journalctl -b -u maculaos-config --no-pager")
    assert "maculaos.upgrade.channel" in journal
    assert h.check_output("systemctl is-active maculaos-config") == "active"
    failed = h.check_output("systemctl list-units --failed --plain --no-legend")
    assert failed == "", failed


def test_item7_a_second_maculaos_disk_is_never_mounted_grown_or_written(
    node: vmlib.VM, rebooted: Before
) -> None:
    """Node A has had another MaculaOS disk attached since its first boot (the same image
    with GUIDs of its own, as another node's disk or an older image has them), first on the
    bus: the kernel calls it vda and the node's own disk vdb. Through both boots (the second
    into slot B) root, state and ESP came from the node's own disk every time, that disk got
    GUIDs of its own, and the other disk was never written: its writable overlay on the host
    holds nothing."""
    from tests.vm.conftest import FOREIGN_DISK_GUID  # noqa: PLC0415

    h: Any = host(node)
    assert h.check_output("sudo sfdisk --disk-id /dev/vda").lower() == FOREIGN_DISK_GUID
    own, other = "vdb", "vda"
    assert h.file("/run/maculaos/own-disk").content_string.strip() == own
    assert "STATUS=own" in h.file("/run/maculaos/boot-disk").content_string
    h.run("sudo ls /efi")  # the ESP is mounted on first use (efi.automount)
    for mnt in ("/", "/run/maculaos/state", "/efi"):
        # the last line: the file system (under /efi, systemd's autofs comes first)
        source = h.check_output(f"findmnt -n -o SOURCE {mnt}").splitlines()[-1]
        assert re.fullmatch(rf"/dev/{own}[0-9]", source), (mnt, source)
    assert f"/dev/{other}" not in h.file("/proc/mounts").content_string
    for label in ("esp", "rootfs-a", "rootfs-b", "MACULAOS_STATE"):
        link = h.check_output(f"readlink -f /dev/disk/by-partlabel/{label}")
        assert link.startswith(f"/dev/{own}"), (label, link)
    # GRUB named this boot's ESP by the GUID the node gave its disk at its first boot
    own_guid = h.check_output(f"sudo sfdisk --disk-id /dev/{own}").lower()
    assert own_guid[14] == "4", f"the disk kept the image's GUID {own_guid}"
    esp_uuid = h.check_output(f"lsblk -dno PARTUUID /dev/{own}1").lower()
    assert f"maculaos.esp={esp_uuid}" in h.file("/proc/cmdline").content_string.lower()
    # in no boot did the kernel mount a filesystem of the other disk
    journal = "sudo journalctl _TRANSPORT=kernel --no-pager -o cat"  # every boot kept
    assert int(h.check_output("sudo journalctl -q --list-boots --no-pager | wc -l")) >= 2
    seen = h.check_output(f"{journal} | grep -c '{other}' || true")
    mounted = h.check_output(f"{journal} | grep -E '(EXT4|FAT|squashfs).*{other}' || true")
    assert mounted == "", mounted
    assert int(seen) > 0, "the second disk was not attached"
    # and nothing wrote to it: its overlay on the host holds no data
    overlay = node.extra_disks[0]
    mapping = json.loads(
        subprocess.run(
            ["qemu-img", "map", "-U", "--output=json", str(overlay)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    written = [m for m in mapping if m["depth"] == 0 and m["data"]]
    assert written == [], written[:5]
