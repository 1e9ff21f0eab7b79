"""Applicators and the apply engine against a temporary root (no live changes)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from maculaos.config import engine, fastpath
from maculaos.config.applicators import Target
from tests.unit.test_identity import iface

CONFIG = """
maculaos:
  hostname: macula-${RANDOM_SUFFIX}
  dns_nameservers: [9.9.9.9]
  labels: {macula.io/role: edge, macula.io/arch: "${ARCH}"}
  modules: [br_netfilter]
  keyboard: de
  timezone: Europe/Berlin
  locale: de_DE.UTF-8
sysctl: {net.ipv4.ip_forward: "1"}
ssh_authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1 test@maculaos"]
write_files:
  - {path: /etc/maculaos/hello.txt, content: "hello\\n", permissions: "0640"}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "usr/share/zoneinfo/Europe").mkdir(parents=True)
    (r / "usr/share/zoneinfo/Europe/Berlin").write_bytes(b"TZif")
    (r / "etc").mkdir()
    (r / "etc/locale.gen").write_text("en_US.UTF-8 UTF-8\nde_DE.UTF-8 UTF-8\n")
    (r / "var/lib/maculaos").mkdir(parents=True)
    iface(tmp_path / "net", "eth0", "52:54:00:ab:cd:ef", 2)
    return r


def paths(root: Path) -> engine.Paths:
    return engine.Paths(
        node_config=root / "var/lib/maculaos/config.yaml",
        image_defaults=root / "usr/lib/maculaos/config.yaml",
        cmdline=None,
        state=root / "var/lib/maculaos/state",
        banners=(root / "run/motd.d/50-maculaos-config",),
    )


def target(root: Path) -> Target:
    return Target(root=root, live=False, sysfs_net=root.parent / "net")


def test_apply_writes_everything_then_is_idempotent(root: Path) -> None:
    p = paths(root)
    p.node_config.write_text(CONFIG)
    first = engine.apply(p, target(root))
    assert first.errors == []
    assert (root / "etc/hostname").read_text() == "macula-cdef\n"
    assert os.readlink(root / "etc/localtime") == "../usr/share/zoneinfo/Europe/Berlin"
    assert "LANG=de_DE.UTF-8" in (root / "etc/locale.conf").read_text()
    assert "KEYMAP=de" in (root / "etc/vconsole.conf").read_text()
    assert 'XKBLAYOUT="de"' in (root / "etc/default/keyboard").read_text()
    assert "DNS=9.9.9.9" in (root / "etc/systemd/resolved.conf.d/50-maculaos.conf").read_text()
    labels = (root / "etc/rancher/k3s/config.yaml.d/50-maculaos-labels.yaml").read_text()
    assert '"macula.io/arch=amd64"' in labels
    assert "br_netfilter" in (root / "etc/modules-load.d/50-maculaos-config.conf").read_text()
    assert "net.ipv4.ip_forward = 1" in (root / "etc/sysctl.d/90-maculaos.conf").read_text()
    assert "test@maculaos" in (root / "etc/ssh/authorized_keys.d/macula").read_text()
    hello = root / "etc/maculaos/hello.txt"
    assert hello.read_text() == "hello\n" and (hello.stat().st_mode & 0o777) == 0o640
    assert len(first.changes) == 10
    second = engine.apply(p, target(root))
    assert second.changes == [] and second.errors == []
    status = json.loads(p.status_file.read_text())
    assert status["errors"] == [] and "last_applied" in status
    assert p.last_good.read_text() == CONFIG


def test_invalid_config_keeps_the_last_good_one(root: Path) -> None:
    p = paths(root)
    p.node_config.write_text(CONFIG)
    engine.apply(p, target(root))
    p.node_config.write_text(CONFIG.replace("Europe/Berlin", "Mars/Base"))
    result = engine.apply(p, target(root))
    assert result.used == "last-good"
    assert result.changes == []  # nothing half-applied: the good config is still in force
    assert os.readlink(root / "etc/localtime") == "../usr/share/zoneinfo/Europe/Berlin"
    assert any(
        "maculaos.timezone: Mars/Base is not in the time zone database" in e for e in result.errors
    )
    banner = (root / "run/motd.d/50-maculaos-config").read_text()
    assert "maculaos.timezone" in banner
    status = json.loads(p.status_file.read_text())
    assert "maculaos.timezone" in status["last_error"]["errors"][0]
    # fixed again: banner gone, error cleared
    p.node_config.write_text(CONFIG)
    assert engine.apply(p, target(root)).errors == []
    assert not (root / "run/motd.d/50-maculaos-config").exists()


def test_unknown_locale_is_an_error_naming_the_key(root: Path) -> None:
    p = paths(root)
    p.node_config.write_text("maculaos: {locale: fr_FR.UTF-8}\n")
    result = engine.apply(p, target(root))
    assert any(
        "maculaos.locale: fr_FR.UTF-8 is not built into this image" in e for e in result.errors
    )
    # nothing applied from the failing file (no last good: defaults are in force)
    assert (root / "etc/locale.conf").read_text() == "LANG=C.UTF-8\n"


def test_schema_error_falls_back_too(root: Path) -> None:
    p = paths(root)
    p.node_config.write_text(CONFIG)
    engine.apply(p, target(root))
    p.node_config.write_text(CONFIG + "maculaos_typo: 1\n")
    result = engine.apply(p, target(root))
    assert result.used == "last-good" and result.changes == []
    assert any("maculaos_typo is not a known key" in e for e in result.errors)


def boot(p: engine.Paths, tmp_path: Path, cmdline: str = "/nonexistent/cmdline") -> str:
    """Run the unit's ExecStart (boot.sh) against the temp root; a stand-in for the
    maculaos CLI reports when the full apply would have started."""
    stub = tmp_path / "maculaos-stub"
    stub.write_text("#!/bin/sh\necho FULL APPLY\n")
    stub.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "MACULAOS_STATE": str(p.state),
        "MACULAOS_NODE_CONFIG": str(p.node_config),
        "MACULAOS_IMAGE_DEFAULTS": str(p.image_defaults),
        "MACULAOS_CMDLINE": cmdline,
        "MACULAOS_BIN": str(stub),
        "MACULAOS_SYSFS_NET": str(p.state.parents[3].parent / "net"),
    }
    script = Path(fastpath.__file__).with_name("boot.sh")
    r = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=True)
    return r.stdout


def test_boot_fast_path_skips_an_unchanged_config(root: Path, tmp_path: Path) -> None:
    p = paths(root)
    p.node_config.write_text(CONFIG)
    engine.apply(p, target(root))
    assert "config unchanged" in boot(p, tmp_path)  # nothing to do at boot: no Python
    address = root.parent / "net" / "eth0" / "address"
    address.write_text("52:54:00:00:00:01\n")
    assert "FULL APPLY" in boot(p, tmp_path)  # the disk moved to another machine
    address.write_text("52:54:00:ab:cd:ef\n")
    assert "config unchanged" in boot(p, tmp_path)
    p.node_config.write_text(CONFIG + "maculaos: {timezone: UTC}\n")
    assert "FULL APPLY" in boot(p, tmp_path)  # a changed file is a full apply


def test_boot_fast_path_ignores_the_esp_guid_and_not_the_slot(root: Path, tmp_path: Path) -> None:
    """A node's first boot gives its disk new GUIDs, so the next boot's maculaos.esp= differs:
    a boot word, not config, which must not cost a full apply (issue 10). The slot counts."""
    cmdline = tmp_path / "cmdline"
    words = "BOOT_IMAGE=(hd0,gpt2)/boot/vmlinuz root=PARTLABEL=rootfs-a rauc.slot=A {esp} quiet\n"
    cmdline.write_text(words.format(esp="maculaos.esp=4bda6fc6-d734-5335-801e-ba5aae131993"))
    p = dataclasses.replace(paths(root), cmdline=cmdline)
    p.node_config.write_text(CONFIG)
    engine.apply(p, target(root))
    assert "config unchanged" in boot(p, tmp_path, str(cmdline))
    cmdline.write_text(words.format(esp="maculaos.esp=dddad857-fa4a-4075-973a-09d62767470b"))
    assert "config unchanged" in boot(p, tmp_path, str(cmdline))
    cmdline.write_text(words.format(esp=""))  # a GRUB that names no ESP
    assert "config unchanged" in boot(p, tmp_path, str(cmdline))
    cmdline.write_text(words.format(esp="maculaos.espx=1"))  # not the boot word
    assert "FULL APPLY" in boot(p, tmp_path, str(cmdline))
    cmdline.write_text(words.replace("rauc.slot=A", "rauc.slot=B").format(esp=""))
    assert "FULL APPLY" in boot(p, tmp_path, str(cmdline))
    cmdline.write_text(words.format(esp="maculaos.hostname=other"))
    assert "FULL APPLY" in boot(p, tmp_path, str(cmdline))


def test_boot_fast_path_is_off_with_run_cmd_or_errors(root: Path, tmp_path: Path) -> None:
    p = paths(root)
    p.node_config.write_text(CONFIG + "run_cmd: [true]\n")
    engine.apply(p, target(root))
    assert "FULL APPLY" in boot(p, tmp_path)  # run_cmd runs at every boot (k3OS semantics)
    p.node_config.write_text(CONFIG + "maculaos_typo: 1\n")
    engine.apply(p, target(root))
    assert "FULL APPLY" in boot(p, tmp_path)  # errors: try again, report again


def test_keys_not_acted_on_yet_are_reported(root: Path) -> None:
    p = paths(root)
    p.node_config.write_text("maculaos: {mesh: {realm: io.example}, timezone: Europe/Berlin}\n")
    result = engine.apply(p, target(root))
    assert result.not_acted_on == ["maculaos.mesh.realm"]


def test_boot_fast_path_without_a_config_file(root: Path, tmp_path: Path) -> None:
    """A node that never got a config.yaml still skips the full apply on later boots."""
    p = paths(root)
    (root / "usr/share/zoneinfo/UTC").write_bytes(b"TZif")  # the default time zone
    p.state.mkdir(parents=True)
    assert "FULL APPLY" in boot(p, tmp_path)  # first boot
    engine.apply(p, target(root))  # first boot: defaults applied, status written
    assert "config unchanged" in boot(p, tmp_path)


def test_boot_fast_path_when_the_interface_is_not_there_yet(root: Path, tmp_path: Path) -> None:
    """Early in a boot the network driver may not be loaded, or udev not yet have renamed the
    interface: the address the last apply saw stands in (issue 10: under emulation every boot
    found no interface and applied in full, 36 s). A changed address still counts."""
    p = paths(root)
    p.node_config.write_text(CONFIG)
    engine.apply(p, target(root))
    net = root.parent / "net"
    (net / "eth0").rename(root.parent / "eth0.away")  # not probed yet
    assert "config unchanged" in boot(p, tmp_path)
    # and a full apply then keeps the name it had, not macula-0000
    p.node_config.write_text(CONFIG.replace("Europe/Berlin", "UTC"))
    (root / "usr/share/zoneinfo/UTC").write_bytes(b"TZif")
    assert "FULL APPLY" in boot(p, tmp_path)
    assert engine.apply(p, target(root)).errors == []
    assert (root / "etc/hostname").read_text().strip() == "macula-cdef"
    (root.parent / "eth0.away").rename(net / "eth0")
    assert "config unchanged" in boot(p, tmp_path)
    (net / "eth0/address").write_text("52:54:00:00:00:01\n")
    assert "FULL APPLY" in boot(p, tmp_path)  # another machine's interface


def test_boot_applies_in_full_once_an_interface_appears(root: Path, tmp_path: Path) -> None:
    """An apply that saw no interface records none; the first boot that finds one applies in
    full (the hostname gets its suffix), and so does a record from an older release."""
    net = root.parent / "net"
    (net / "eth0").rename(root.parent / "eth0.away")
    p = paths(root)
    p.node_config.write_text(CONFIG)
    engine.apply(p, target(root))
    assert (p.state / "config-fastpath").read_text().split()[1] == "-"
    assert "config unchanged" in boot(p, tmp_path)  # still none: nothing to do
    (root.parent / "eth0.away").rename(net / "eth0")
    assert "FULL APPLY" in boot(p, tmp_path)
    engine.apply(p, target(root))
    assert (root / "etc/hostname").read_text().strip() == "macula-cdef"
    assert "config unchanged" in boot(p, tmp_path)
    record = p.state / "config-fastpath"
    digest = record.read_text().split()[0]
    record.write_text(f"{digest} {root.parent}/net/eth0/address\n")  # the older format
    assert "FULL APPLY" in boot(p, tmp_path)


def test_boot_fast_path_tells_a_rename_from_another_machine(root: Path, tmp_path: Path) -> None:
    """The interface renamed since (eth0 -> enp0s3, same address) is the same machine; another
    name with another address is another machine, even though the old name is gone."""
    p = paths(root)
    p.node_config.write_text(CONFIG)
    engine.apply(p, target(root))
    net = root.parent / "net"
    (net / "eth0").rename(net / "enp0s3")
    assert "config unchanged" in boot(p, tmp_path)
    (net / "enp0s3").rename(root.parent / "away")
    iface(net, "enp3s0", "52:54:00:12:34:56", 2)  # the disk in another machine
    assert "FULL APPLY" in boot(p, tmp_path)
    iface(net, "enp4s0", "52:54:00:ab:cd:ef", 3)  # ...unless one of its interfaces is ours
    assert "config unchanged" in boot(p, tmp_path)


def test_interfaces_without_an_address_are_no_interface(root: Path, tmp_path: Path) -> None:
    """The shell counts interfaces as Python does: one with a zero address is none, so a node
    whose only interface has none still takes the fast path."""
    net = root.parent / "net"
    (net / "eth0/address").write_text("00:00:00:00:00:00\n")
    p = paths(root)
    p.node_config.write_text(CONFIG)
    engine.apply(p, target(root))
    assert (p.state / "config-fastpath").read_text().split()[1] == "-"
    assert "config unchanged" in boot(p, tmp_path)


def test_the_remembered_address_outlives_a_boot_without_fast_path(
    root: Path, tmp_path: Path
) -> None:
    """An apply that may not record a fingerprint (run_cmd) still keeps the address it saw: a
    later apply before the interface exists keeps the hostname's suffix."""
    p = paths(root)
    p.node_config.write_text(CONFIG + "run_cmd: [true]\n")
    engine.apply(p, target(root))
    assert not (p.state / "config-fastpath").exists()
    (root.parent / "net/eth0").rename(root.parent / "away")
    engine.apply(p, target(root))
    assert (root / "etc/hostname").read_text().strip() == "macula-cdef"


@pytest.mark.parametrize(
    "record",
    ids=["path", "extra-field", "huge", "empty", "newline", "no-mac"],
    argvalues=[
        "0" * 64 + " ../x/\n",
        "0" * 64 + " 52:54:00:ab:cd:ef extra\n",
        "huge",
        "",
        "\n",
        "0" * 64,
    ],
)
def test_a_damaged_record_is_a_full_apply_in_bounded_time(
    root: Path, tmp_path: Path, record: str
) -> None:
    p = paths(root)
    p.node_config.write_text(CONFIG)
    engine.apply(p, target(root))
    (p.state / "config-fastpath").write_text("x" * 10_000_000 if record == "huge" else record)
    started = time.monotonic()
    assert "FULL APPLY" in boot(p, tmp_path)
    assert time.monotonic() - started < 10


def test_a_record_that_is_not_a_file_is_a_full_apply(root: Path, tmp_path: Path) -> None:
    p = paths(root)
    p.node_config.write_text(CONFIG)
    engine.apply(p, target(root))
    (p.state / "config-fastpath").unlink()
    os.mkfifo(p.state / "config-fastpath")  # read would block the boot
    assert "FULL APPLY" in boot(p, tmp_path)


def test_a_remembered_address_that_is_not_one_is_ignored(root: Path) -> None:
    p = paths(root)
    p.state.mkdir(parents=True)
    (p.state / "primary-mac").write_text("../../etc/x\n")
    (root.parent / "net/eth0").rename(root.parent / "away")
    p.node_config.write_text(CONFIG)
    engine.apply(p, target(root))
    assert (root / "etc/hostname").read_text().strip() == "macula-0000"
