"""Bundles built and checked with the real RAUC and OpenSSL on the host."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from maculaos.arch import Architecture
from maculaos_build import bundle

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bundle.Signer, Path]:
    d = tmp_path_factory.mktemp("bundle")
    src = d / "root"
    (src / "usr/lib").mkdir(parents=True)
    (src / "usr/lib/os-release").write_text('NAME="MaculaOS"\nVERSION_ID="0.1.0"\n')
    # incompressible bytes: enough casync chunks that the index outgrows verity's one block
    (src / "usr/lib/blob").write_bytes(random.Random(1).randbytes(8 << 20))
    slot = d / "rootfs.squashfs"
    subprocess.run(["mksquashfs", str(src), str(slot), "-noappend", "-quiet"], check=True)
    sign = bundle.dev_signer(d / "keys")
    out = bundle.make_bundle(slot, "0.2.0", Architecture.amd64, d / "b.raucb", sign)
    return out, sign, d


def _info(path: Path, keyring: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rauc", "info", f"--keyring={keyring}", "--output-format=json", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_bundle_verifies_against_its_keyring(signed: tuple[Path, bundle.Signer, Path]) -> None:
    out, sign, _ = signed
    r = _info(out, sign.keyring)
    assert r.returncode == 0, r.stderr
    assert '"compatible":"maculaos-amd64"' in r.stdout.replace(" ", "")
    assert '"version":"0.2.0"' in r.stdout.replace(" ", "")
    assert oct(Path(sign.key).stat().st_mode & 0o777) == "0o600"


def test_tampered_bundle_is_refused(signed: tuple[Path, bundle.Signer, Path]) -> None:
    out, sign, d = signed
    bad = d / "tampered.raucb"
    data = bytearray(out.read_bytes())
    data[len(data) // 3] ^= 0x01
    bad.write_bytes(bytes(data))
    r = _info(bad, sign.keyring)
    assert r.returncode != 0 and "signature" in r.stderr.lower()


def test_other_key_is_refused(signed: tuple[Path, bundle.Signer, Path]) -> None:
    out, _, d = signed
    other = bundle.dev_signer(d / "other-keys", "other")
    r = _info(out, other.keyring)
    assert r.returncode != 0 and "verif" in r.stderr.lower()


def test_restamp_changes_only_the_version(signed: tuple[Path, bundle.Signer, Path]) -> None:
    _, _, d = signed
    v3 = bundle.restamp(d / "rootfs.squashfs", "0.3.0", d / "v3.squashfs")
    listing = subprocess.run(
        ["unsquashfs", "-cat", str(v3), "usr/lib/os-release"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'VERSION_ID="0.3.0"' in listing and 'NAME="MaculaOS"' in listing


def test_casync_bundle_is_signed_verity_with_a_chunk_store_beside_it(
    signed: tuple[Path, bundle.Signer, Path],
) -> None:
    """What the index's "casync" entry names: a verity bundle (RAUC can stream it) holding a
    chunk index, the store beside it under the name RAUC derives (.castr for .raucb), and
    the same slot chunked twice gives the same chunks (a rebuild serves no new ones)."""
    _, sign, d = signed
    slot = d / "rootfs.squashfs"
    out = bundle.make_casync(slot, "0.2.0", Architecture.amd64, d / "casync" / "b.raucb", sign)
    r = _info(out, sign.keyring)
    assert r.returncode == 0, r.stderr
    assert '"filename":"rootfs.squashfs.caibx"' in r.stdout.replace(" ", "")
    text = subprocess.run(
        ["rauc", "info", f"--keyring={sign.keyring}", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Bundle Format: \tverity" in text.stdout or "Bundle Format: verity" in text.stdout
    store = d / "casync" / "b.castr"
    chunks = sorted(p.relative_to(store) for p in store.rglob("*.cacnk"))
    assert chunks
    again = bundle.make_casync(slot, "0.2.0", Architecture.amd64, d / "again" / "b.raucb", sign)
    assert (
        sorted(
            p.relative_to(again.with_suffix(".castr"))
            for p in again.with_suffix(".castr").rglob("*.cacnk")
        )
        == chunks
    )
    plain = d / "b.raucb"
    entry = bundle.index_entry(
        plain, "0.2.0", Architecture.amd64, "stable", d / "casync" / "b.raucb"
    )
    assert entry["casync"]["bundle"] == "casync/b.raucb" and len(entry["casync"]["sha256"]) == 64


def test_a_bundle_can_be_written_into_a_directory_that_does_not_exist_yet(
    signed: tuple[Path, bundle.Signer, Path],
) -> None:
    """The bench's release directories are new: make_bundle made its temp dir inside one."""
    _, sign, d = signed
    out = bundle.make_bundle(
        d / "rootfs.squashfs", "0.2.0", Architecture.amd64, d / "new" / "0.2.0" / "b.raucb", sign
    )
    assert _info(out, sign.keyring).returncode == 0
