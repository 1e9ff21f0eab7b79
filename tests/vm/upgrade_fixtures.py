"""Bundles for the upgrade tests, derived from the one built image (no second build):
v2 = the same root re-stamped 0.2.0 with a few /etc changes, packed as the image is (so
unchanged files give unchanged chunks), whole and in casync form; v3 broken two ways; a
tampered copy; one signed by a key the image does not trust. Served by the release-server
test double on the host, which the guests reach at 10.0.2.2. mksquashfs runs on one host
core: the node boots meanwhile (tests/vm/test_upgrade.py) on the other."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from maculaos.arch import Architecture
from maculaos_build import bundle

AMD64 = Architecture.amd64


@dataclasses.dataclass
class Releases:
    root: Path  # served directory: one sub-directory (with index.json) per scenario
    v1: str
    v2: str = "0.2.0"
    v3_unhealthy: str = "0.3.0"
    v3_panic: str = "0.3.1"


V2_USER = "maculasvc"
V2_UNIT = "maculaos-v2-demo.service"
V2_ISSUE = "MaculaOS v2 test release"


def _v2_etc(root: Path) -> None:
    """What a real next release does to /etc: a new system user, a new unit, a changed
    default file (issue 9 item 6)."""
    etc = root / "etc"
    uids = {int(line.split(":")[2]) for line in (etc / "passwd").read_text().splitlines() if line}
    gids = {int(line.split(":")[2]) for line in (etc / "group").read_text().splitlines() if line}
    uid = next(n for n in range(900, 1000) if n not in uids and n not in gids)
    for name, line in (
        ("passwd", f"{V2_USER}:x:{uid}:{uid}:v2 service:/nonexistent:/usr/sbin/nologin"),
        ("group", f"{V2_USER}:x:{uid}:"),
        ("shadow", f"{V2_USER}:!:20000::::::"),
        ("gshadow", f"{V2_USER}:!::"),
    ):
        f = etc / name
        mode = f.stat().st_mode
        f.write_text(f.read_text() + line + "\n")
        f.chmod(mode)
    (etc / "systemd/system" / V2_UNIT).write_text(
        "[Unit]\nDescription=added by the v2 test release\n"
        "[Service]\nType=oneshot\nExecStart=/bin/true\n"
    )
    issue = etc / "issue"
    issue.write_text(issue.read_text() + V2_ISSUE + "\n")


def _break_ssh(root: Path) -> None:
    """An update whose SSH server cannot start: ssh.service (a required unit) fails."""
    sshd = root / "usr/sbin/sshd"
    sshd.unlink()
    sshd.write_text("#!/bin/sh\necho 'sshd: broken by the v3 test bundle' >&2\nexit 1\n")
    sshd.chmod(0o755)


def _break_initrd(root: Path) -> None:
    """An update whose kernel panics: its initramfs is garbage, so no root is found."""
    link = root / "boot/initrd.img"
    target = link
    if link.is_symlink():  # resolve inside the unpacked tree, never on the host
        name = os.readlink(link)
        target = root / name.lstrip("/") if name.startswith("/") else link.parent / name
    assert root in target.resolve().parents, target
    target.write_bytes(os.urandom(4096))


def _publish(
    root: Path, name: str, bundle_file: Path, version: str, casync: Path | None = None
) -> None:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    dest = d / bundle_file.name
    if bundle_file.parent != d:
        shutil.move(bundle_file, dest)
    bundle.write_index(d, [bundle.index_entry(dest, version, AMD64, "stable", casync)])


def make_v2(
    image_dir: Path, work: Path, keep_slot: bool = False, processors: int | None = None
) -> tuple[Path, str, str]:
    """Only the v2 scenario (served root, v1, v2): what the power-cut runs need. With
    ``keep_slot`` the v2 slot image stays at work/slot-v2.squashfs. ``processors`` caps
    mksquashfs (one core when a node boots beside it)."""
    manifest = json.loads((image_dir / "manifest.json").read_text())
    rel = Releases(root=work / "srv", v1=manifest["version"])
    slot = bundle.slot_squashfs(image_dir, work / "slot-v1.squashfs")
    sq = bundle.restamp(
        slot,
        rel.v2,
        work / "slot-v2.squashfs",
        compression=manifest["squashfs"]["compression"],
        mutate=_v2_etc,
        processors=processors,
    )
    name = f"macula-os-{rel.v2}-amd64.raucb"
    out = bundle.make_bundle(sq, rel.v2, AMD64, work / name)
    delta = bundle.make_casync(sq, rel.v2, AMD64, rel.root / "v2" / bundle.CASYNC_DIR / name)
    _publish(rel.root, "v2", out, rel.v2, delta)
    slot.unlink()
    if not keep_slot:
        sq.unlink()
    return rel.root, rel.v1, rel.v2


def make(image_dir: Path, work: Path) -> Releases:
    root, v1, _ = make_v2(image_dir, work, keep_slot=True, processors=1)
    rel = Releases(root=root, v1=v1)
    v2 = root / "v2" / f"macula-os-{rel.v2}-amd64.raucb"
    slot = bundle.slot_squashfs(image_dir, work / "slot-v1.squashfs")

    def build(version: str, mutate: Callable[[Path], None] | None = None) -> Path:
        sq = bundle.restamp(
            slot, version, work / f"slot-{version}.squashfs", mutate=mutate, processors=1
        )
        out = work / f"macula-os-{version}-amd64.raucb"
        bundle.make_bundle(sq, version, AMD64, out)
        sq.unlink()
        return out

    # the v2 slot signed by a CA the image does not trust
    foreign_slot = work / "slot-v2.squashfs"
    other = bundle.dev_signer(work / "other-keys", "untrusted")
    (work / "foreign").mkdir(exist_ok=True)
    foreign = bundle.make_bundle(foreign_slot, rel.v2, AMD64, work / "foreign" / v2.name, other)
    foreign_slot.unlink()
    _publish(rel.root, "foreign", foreign, rel.v2)
    # v2 with one byte flipped in its payload; the index carries the tampered file's own
    # sha256, as a compromised server would
    tampered = work / "tampered" / v2.name
    tampered.parent.mkdir(exist_ok=True)
    shutil.copy(v2, tampered)
    with tampered.open("r+b") as f:
        f.seek(v2.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    _publish(rel.root, "tampered", tampered, rel.v2)
    _publish(rel.root, "v3-unhealthy", build(rel.v3_unhealthy, _break_ssh), rel.v3_unhealthy)
    _publish(rel.root, "v3-panic", build(rel.v3_panic, _break_initrd), rel.v3_panic)
    slot.unlink()
    return rel
