"""Issue 9 item 9: `maculaos config validate` is as strict as apply (the same system checks,
--schema-only for a host that is not the node), the checks know kernel modules and sysctl
keys, and the fleet module never writes a file the node would reject."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from maculaos import __main__ as cli_main
from maculaos.config import engine
from maculaos.config.applicators import Target
from maculaos.config.validate import defaults
from tests.unit.modhelper import run_module


def validate_file(tmp_path: Path, text: str, *flags: str) -> int:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return cli_main.main(["config", "validate", *flags, str(path)])


def test_item9_validate_runs_the_checks_apply_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "maculaos: {timezone: Europe/Atlantis}\n"  # the right shape, but no such zone
    assert validate_file(tmp_path, text) == 1
    err = capsys.readouterr().err
    assert "maculaos.timezone: Europe/Atlantis is not in the time zone database" in err
    assert validate_file(tmp_path, text, "--schema-only") == 0  # on a host: the shape only
    assert "valid (schema only)" in capsys.readouterr().out


def test_item9_validate_rejects_a_locale_this_system_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert validate_file(tmp_path, "maculaos: {locale: xh_ZA.UTF-8}\n") == 1
    assert "maculaos.locale: xh_ZA.UTF-8 is not built into this image" in capsys.readouterr().err


def base_root(root: Path) -> Path:
    """A root whose time zone database has the default zone (UTC)."""
    (root / "usr/share/zoneinfo").mkdir(parents=True, exist_ok=True)
    (root / "usr/share/zoneinfo/UTC").write_bytes(b"TZif")
    return root


def module_tree(root: Path) -> None:
    base_root(root)
    moddir = root / "lib/modules" / os.uname().release
    moddir.mkdir(parents=True)
    (moddir / "modules.dep").write_text(
        "kernel/net/bridge/br_netfilter.ko.xz: kernel/net/bridge/bridge.ko.xz\n"
        "kernel/drivers/net/wireguard/wireguard.ko.zst:\n"
    )
    (moddir / "modules.builtin").write_text("kernel/fs/overlayfs/overlay.ko\n")
    (moddir / "modules.alias").write_text("alias fs-overlay overlay\nalias nf_nat_ipv4 nf_nat\n")


def test_item9_unknown_kernel_modules_are_rejected(tmp_path: Path) -> None:
    module_tree(tmp_path)
    values = defaults()
    values["maculaos.modules"] = ["br_netfilter", "overlay", "wireguard", "fs-overlay"]
    t = Target(root=tmp_path, live=False)
    assert engine.system_problems(values, t) == []
    values["maculaos.modules"] = ["br_netfilter", "br_netfliter"]
    assert engine.system_problems(values, t) == [
        f"maculaos.modules: 'br_netfliter' is not a kernel module of this kernel "
        f"({tmp_path}/lib/modules/{os.uname().release})"
    ]


def test_item9_no_module_index_means_nothing_to_check(tmp_path: Path) -> None:
    values = defaults()
    values["maculaos.modules"] = ["anything"]
    assert engine.system_problems(values, Target(root=base_root(tmp_path), live=False)) == []


@pytest.mark.skipif(
    not Path("/proc/sys/net/ipv4/ip_forward").exists(), reason="needs /proc/sys/net/ipv4"
)
def test_item9_unknown_sysctl_keys_are_rejected(tmp_path: Path) -> None:
    values = defaults()
    values["maculaos.modules"] = []  # none waiting to be loaded: every key must exist now
    values["sysctl"] = {"net.ipv4.ip_forward": "1", "net/ipv4/ip_forward": "1"}
    t = Target(root=base_root(tmp_path), live=True)
    assert engine.system_problems(values, t) == []
    values["sysctl"] = {"net.ipv4.ip_fowrard": "1"}
    assert engine.system_problems(values, t) == [
        "sysctl: 'net.ipv4.ip_fowrard' is not a kernel parameter of this kernel "
        "(no /proc/sys/net/ipv4/ip_fowrard)"
    ]


@pytest.mark.integration
def test_item9_the_fleet_module_never_writes_a_file_the_node_rejects(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# previous\n")
    exe = str(Path(sys.executable).parent / "maculaos")
    config = {"maculaos": {"timezone": "Europe/Atlantis"}}
    args = {"config": config, "path": str(path), "apply": False, "executable": exe}
    result = run_module("maculaos_config", args)
    assert result["failed"]
    assert "maculaos.timezone: Europe/Atlantis is not in the time zone database" in result["msg"]
    assert path.read_text() == "# previous\n"
