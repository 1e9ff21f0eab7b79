"""Issue 9 item 7: the node mounts, grows and writes only the disk it booted from.

The initramfs decision (local-top/maculaos-disk, run here by the shell the initramfs uses)
and the Python guard every partition writer goes through. The VM tier boots a node with a
second MaculaOS disk attached (tests/vm/test_node.py::test_item7_*)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from maculaos import bootdisk
from tests.support import fakedisk

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "ansible/roles/kernel/files/etc/initramfs-tools/scripts/local-top/maculaos-disk"
ESP_A = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
ESP_B = "6d61636c-756c-516f-832d-6469736b0001"
BUSYBOX = shutil.which("busybox")  # the initramfs's shell when the host has it
SH = [BUSYBOX, "sh"] if BUSYBOX else ["sh"]


def decide(want: str, candidates: str) -> str:
    r = subprocess.run(
        [*SH, str(SCRIPT), "decide", want, candidates],
        env={"MACULAOS_DISK_TEST": "decide", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return str(r.stdout).strip()


@pytest.mark.parametrize(
    ("want", "candidates", "verdict"),
    [
        # one node disk, a second MaculaOS disk with other GUIDs (another node, an older image)
        (ESP_A, f"vda {ESP_A}\nvdb {ESP_B}", "own vda"),
        (ESP_A, f"vdb {ESP_B}\nvda {ESP_A}", "own vda"),
        (ESP_A.upper(), f"vda {ESP_A}\nsda {ESP_B}", "own vda"),
        (ESP_A, f"nvme0n1 {ESP_A.upper()}", "own nvme0n1"),
        # a byte-for-byte copy of the boot disk: which one booted cannot be told
        (ESP_A, f"vda {ESP_A}\nvdb {ESP_A}", "ambiguous"),
        # GRUB's ESP is not among the disks the kernel sees
        (ESP_A, f"vdb {ESP_B}", "none"),
        (ESP_A, "", "none"),
        # a GRUB that could not probe: only a lone MaculaOS disk is taken
        ("", f"vda {ESP_A}", "own vda"),
        ("", f"vda {ESP_A}\nvdb {ESP_B}", "ambiguous"),
        ("", "", "none"),  # nothing visible yet: the initramfs waits
        # junk lines from the udev database are ignored
        (ESP_A, f"vda {ESP_A}\n\nvdb\n  \n", "own vda"),
    ],
)
def test_item7_the_initramfs_takes_only_the_disk_grub_was_loaded_from(
    want: str, candidates: str, verdict: str
) -> None:
    got = decide(want.lower(), candidates)
    assert got.split()[0] == verdict.split()[0], got
    assert got.startswith(verdict), got
    if not got.startswith("own"):
        assert len(got.split()) > 3, "a refusal says why"


def test_item7_writers_get_the_boot_disks_partition(tmp_path: Path) -> None:
    f = fakedisk.make(tmp_path, "vda", "vda")
    assert bootdisk.partition("rootfs-b", **f).name == "vda3"
    assert bootdisk.describe(f["run"]) == {"disk": "vda", "problem": None}


def test_item7_a_name_that_points_at_the_other_disk_is_refused(tmp_path: Path) -> None:
    f = fakedisk.make(tmp_path, "vda", "vdb")
    with pytest.raises(bootdisk.NotOwnDisk, match="not a partition of the boot disk vda"):
        bootdisk.partition("esp", **f)


@pytest.mark.parametrize("content", [None, "", "../vda", ".", "vda/../vdb"])
def test_item7_no_known_boot_disk_means_nothing_is_written(
    tmp_path: Path, content: str | None
) -> None:
    f = fakedisk.make(tmp_path, content, "vda")
    with pytest.raises(bootdisk.NotOwnDisk) as e:
        bootdisk.partition("esp", **f)
    if content is None:
        assert "2 disks carry the same ESP" in str(e.value)
        assert "remove the other MaculaOS disk" in str(e.value)
    assert bootdisk.describe(f["run"])["disk"] is None


# --- the ESP mounted on first use (efi.automount; docs/decisions/0010) ---


def _esp_on_first_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, reads: list[bool], same_fs: bool
) -> tuple[Path, list[str]]:
    """/efi is an autofs mount point; ``reads`` says which reads of it succeed in turn."""

    device = tmp_path / "vda1"
    device.write_text("")
    mount = tmp_path / "efi"
    mount.mkdir()
    monkeypatch.setattr(bootdisk, "partition", lambda label: device)
    monkeypatch.setattr(os.path, "ismount", lambda p: True)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    seen: list[str] = []
    real_listdir, real_stat = os.listdir, os.stat

    def listdir(p: Any) -> list[str]:
        seen.append(str(p))
        if not reads[len(seen) - 1]:
            raise OSError(19, "No such device")
        return real_listdir(p)

    def stat(p: Any, *a: Any, **kw: Any) -> Any:
        st = real_stat(p, *a, **kw)
        if same_fs and Path(p) == device:
            return os.stat_result(tuple(st), {"st_rdev": real_stat(mount).st_dev})
        return st

    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(os, "stat", stat)
    return mount, seen


def test_ensure_esp_mounts_the_boot_disks_esp_on_first_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from maculaos.upgrade import bootenv  # noqa: PLC0415

    mount, seen = _esp_on_first_use(monkeypatch, tmp_path, [False, True], same_fs=True)
    bootenv.ensure_esp(mount)
    assert len(seen) == 2  # a device job that timed out earlier is tried again
    assert "cannot be read yet (try 1 of 3)" in capsys.readouterr().err


def test_ensure_esp_gives_up_after_three_reads_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from maculaos.upgrade import bootenv  # noqa: PLC0415

    mount, seen = _esp_on_first_use(monkeypatch, tmp_path, [False] * 5, same_fs=True)
    bootenv.ensure_esp(mount)  # the read that follows names the error
    assert len(seen) == 3
    assert "try 3 of 3" in capsys.readouterr().err


def test_ensure_esp_refuses_a_file_system_that_is_not_the_boot_disks_esp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from maculaos.upgrade import bootenv  # noqa: PLC0415

    mount, _ = _esp_on_first_use(monkeypatch, tmp_path, [True], same_fs=False)
    with pytest.raises(bootdisk.NotOwnDisk, match="another file system"):
        bootenv.ensure_esp(mount)
