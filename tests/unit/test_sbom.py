"""Issue 10, goal 6: the SBOM. Packages and licences come out of a real squashfs (mksquashfs
on the host); the parsers meet what dpkg databases and copyright files really hold, and what a
hostile slot could hold (symlinks out of the tree, huge files, odd bytes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maculaos.arch import Architecture
from maculaos.log import MaculaError
from maculaos_build import sbom

DEP5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"

STATUS = """\
Package: openssh-server
Status: install ok installed
Priority: optional
Architecture: amd64
Source: openssh (1:10.0p1-7)
Version: 1:10.0p1-7+deb13u4
Description: secure shell (SSH) server
 a continuation line: Version: 9.9 (not a field)
 .
 more

Package: old-thing
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.41-12

Package: libc6
Status: install ok installed
Architecture: i386
Version: 2.41-12

Package: no-version
Status: install ok installed
Architecture: all

Package: held
Status: hold ok installed
Architecture: all
Version: 3
"""


def test_installed_packages_are_what_dpkg_says_is_installed() -> None:
    got = sbom.installed_packages(STATUS)
    assert [(p["name"], p["architecture"]) for p in got] == [
        ("held", "all"),
        ("libc6", "amd64"),
        ("libc6", "i386"),
        ("openssh-server", "amd64"),
    ]
    ssh = next(p for p in got if p["name"] == "openssh-server")
    # the source's version in brackets is not part of its name; a continuation is not a field
    assert ssh["source"] == "openssh" and ssh["version"] == "1:10.0p1-7+deb13u4"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (DEP5 + "\nFiles: *\nLicense: GPL-2+ or Artistic-1.0\n", ["GPL-2+", "Artistic-1.0"]),
        (
            DEP5 + "\nFiles: *\nLicense: GPL-2+\n text of it\n\nFiles: a/*\nLicense: MIT and "
            "BSD-3-clause\n\nFiles: b/*\nLicense: (GPL-2 or LGPL-2.1), with OpenSSL exception\n"
            "\nLicense: GPL-2+\n the same name again\n",
            ["GPL-2+", "MIT", "BSD-3-clause", "GPL-2", "LGPL-2.1"],
        ),
        # free-form files (older packages) and missing ones: no guess
        ("This package was debianized by ...\nLicense: GPL\n", []),
        (None, []),
        ("", []),
        # words that are no licence name are dropped, not invented
        (DEP5 + "\nFiles: *\nLicense: see below!! <script>\n", []),
        # CRLF line ends
        (DEP5.replace("\n", "\r\n") + "\r\nFiles: *\r\nLicense: ISC\r\n", ["ISC"]),
    ],
    ids=["or", "many-paragraphs", "free-form", "missing", "empty", "junk", "crlf"],
)
def test_licenses_from_dep5(text: str | None, want: list[str]) -> None:
    assert sbom.licenses(text) == want


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=3000))
def test_any_copyright_text_gives_short_clean_names(text: str) -> None:
    for body in (text, DEP5 + text, DEP5 + "\nLicense: " + text):
        names = sbom.licenses(body)
        assert len(names) == len(set(names))
        assert all(sbom.LICENSE_WORD.match(n) for n in names)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000))
def test_any_status_text_parses_without_error(text: str) -> None:
    for p in sbom.installed_packages(text + "\n\n" + STATUS):
        assert p["name"] and p["version"]


def _slot(tmp_path: Path, tree: dict[str, str | bytes], links: dict[str, str]) -> Path:
    root = tmp_path / "tree"
    for rel, content in tree.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            f.write_bytes(content)
        else:
            f.write_text(content)
    for rel, target in links.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, f)
    out = tmp_path / "slot.squashfs"
    subprocess.run(
        ["mksquashfs", str(root), str(out), "-noappend", "-quiet", "-no-progress"],
        check=True,
        capture_output=True,
    )
    return out


def test_from_a_real_squashfs_never_reading_outside_it(tmp_path: Path) -> None:
    secret = tmp_path / "host-file"
    secret.write_text(DEP5 + "\nLicense: HOST-SECRET\n")
    status = "".join(
        f"Package: {n}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\n"
        for n in ("a", "b", "c", "d", "e")
    )
    slot = _slot(
        tmp_path,
        {
            "var/lib/dpkg/status": status,
            "usr/share/doc/a/copyright": DEP5 + "\nFiles: *\nLicense: Apache-2.0\n",
            # a huge copyright file is read up to its bound, not whole
            "usr/share/doc/d/copyright": DEP5 + "\nLicense: MIT\n" + "x" * (3 << 20),
            # bytes that are not UTF-8
            "usr/share/doc/e/copyright": DEP5.encode() + b"\nLicense: Zlib\n\xff\xfe\x00\n",
        },
        {
            "usr/share/doc/b/copyright": str(secret),  # absolute: the build host's file
            "usr/share/doc/c": "a",  # Debian's shared doc directories
        },
    )
    packages, found = sbom.from_slot(slot)
    assert [p["name"] for p in packages] == ["a", "b", "c", "d", "e"]
    assert found == {"a": ["Apache-2.0"], "b": [], "c": ["Apache-2.0"], "d": ["MIT"], "e": ["Zlib"]}


def test_a_slot_without_a_dpkg_database_is_a_clear_error(tmp_path: Path) -> None:
    slot = _slot(tmp_path, {"etc/hostname": "x\n"}, {})
    with pytest.raises(Exception, match="cannot read the dpkg database"):
        sbom.from_slot(slot)


def test_the_document_is_cyclonedx_and_the_same_for_the_same_slot() -> None:
    pkgs = sbom.installed_packages(STATUS)
    args = {
        "version": "1.2.3",
        "arch": Architecture.amd64,
        "source_date_epoch": 1795795390,
        "squashfs_sha256": "ab" * 32,
        "packages": pkgs,
        "package_licenses": {"openssh-server": ["BSD-2-clause"]},
        "debs": {("libc6", "2.41-12", "amd64"): "cd" * 32},
        "artifacts": {"macula-os-1.2.3-amd64.squashfs": "ab" * 32},
    }
    one = json.dumps(sbom.document(**args), sort_keys=True)  # type: ignore[arg-type]
    assert one == json.dumps(sbom.document(**args), sort_keys=True)  # type: ignore[arg-type]
    doc = json.loads(one)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.5"
    assert doc["metadata"]["timestamp"] == "2026-11-27T16:03:10Z"
    by_ref = {c["bom-ref"]: c for c in doc["components"]}
    assert len(by_ref) == len(doc["components"])  # libc6 twice, as two architectures
    ssh = by_ref["pkg:deb/debian/openssh-server@1%3A10.0p1-7%2Bdeb13u4?arch=amd64&distro=debian-13"]
    assert ssh["licenses"] == [{"license": {"name": "BSD-2-clause"}}] and "hashes" not in ssh
    libc = by_ref["pkg:deb/debian/libc6@2.41-12?arch=amd64&distro=debian-13"]
    assert libc["licenses"] == [{"expression": "NOASSERTION"}]
    assert libc["hashes"] == [{"alg": "SHA-256", "content": "cd" * 32}]
    assert by_ref["file:macula-os-1.2.3-amd64.squashfs"]["hashes"][0]["content"] == "ab" * 32


def test_deb_hashes_read_debian_file_names(tmp_path: Path) -> None:
    (tmp_path / "openssh-server_1%3a10.0p1-7_amd64.deb").write_bytes(b"deb")
    (tmp_path / "not-a-deb_1.txt").write_bytes(b"x")
    (tmp_path / "weird_name.deb").write_bytes(b"x")
    got = sbom.deb_hashes(tmp_path)
    assert list(got) == [("openssh-server", "1:10.0p1-7", "amd64")]
    assert sbom.deb_hashes(tmp_path / "missing") == {}


def _root(tmp: Path) -> Path:
    root = tmp / "root"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    (root / "usr/share/doc/openssh-server").mkdir(parents=True)
    (root / "usr/share/doc/openssh-server/copyright").write_text(
        DEP5 + "\nFiles: *\nLicense: BSD-2-clause\n"
    )
    (root / "usr/lib/maculaos").mkdir(parents=True)
    return root


INFO = {"version": "1.2.3", "arch": "amd64", "source_date_epoch": 1795795390}


def test_the_image_carries_its_own_sbom(tmp_path: Path) -> None:
    """Goal 6: the SBOM is inside the image, too: the same packages, licences and .deb digests
    as the published one, without the digests of artifacts made after the slot."""
    root = _root(tmp_path)
    apt = tmp_path / "apt"
    apt.mkdir()
    (apt / "libc6_2.41-12_amd64.deb").write_bytes(b"deb")
    old = os.umask(0o077)
    try:
        added = sbom.embed(root, INFO, apt)
    finally:
        os.umask(old)
    assert added == ["usr/lib/maculaos/sbom.cdx.json"]
    inside = root / added[0]
    assert inside.stat().st_mode & 0o777 == 0o644  # readable by the macula user
    doc = json.loads(inside.read_text())
    names = sorted(c["name"] for c in doc["components"])
    assert names == ["held", "libc6", "libc6", "openssh-server"]
    assert all(c["type"] == "library" for c in doc["components"])
    ssh = next(c for c in doc["components"] if c["name"] == "openssh-server")
    assert ssh["licenses"] == [{"license": {"name": "BSD-2-clause"}}]
    libc = [c for c in doc["components"] if c.get("hashes")]
    assert [c["properties"][0]["value"] for c in libc] == ["amd64"]
    props = {p["name"]: p["value"] for p in doc["metadata"]["component"]["properties"]}
    assert props == {"maculaos:arch": "amd64", "maculaos:sbom-location": str(sbom.IN_IMAGE)}
    # the same tree gives the same document; another package set another serial number
    again = _root(tmp_path / "again")
    sbom.embed(again, INFO, apt)
    assert (again / added[0]).read_bytes() == inside.read_bytes()
    other = _root(tmp_path / "other")
    (other / "var/lib/dpkg/status").write_text(STATUS.replace("2.41-12", "2.41-13"))
    sbom.embed(other, INFO, apt)
    assert json.loads((other / added[0]).read_text())["serialNumber"] != doc["serialNumber"]


def test_embedding_never_overwrites_or_follows_a_link(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root / "usr/lib/maculaos/sbom.cdx.json").write_text("a role's file\n")
    with pytest.raises(MaculaError, match=r"already has /usr/lib/maculaos/sbom\.cdx\.json"):
        sbom.embed(root, INFO, tmp_path)
    assert (root / "usr/lib/maculaos/sbom.cdx.json").read_text() == "a role's file\n"
    linked = _root(tmp_path / "linked")
    outside = tmp_path / "host"
    outside.write_text("host file\n")
    (linked / "usr/lib/maculaos/sbom.cdx.json").symlink_to(outside)
    with pytest.raises(MaculaError, match="already has"):
        sbom.embed(linked, INFO, tmp_path)
    assert outside.read_text() == "host file\n"
    # a link anywhere on the way (absolute: the build host's own /usr; relative: elsewhere in
    # the tree, where the listing check would not look)
    for name, target in (("usr/lib/maculaos", tmp_path), ("usr/lib", "/usr/lib"),
                         ("usr", "var")):  # fmt: skip
        moved = _root(tmp_path / f"moved-{name.replace('/', '-')}")
        shutil.rmtree(moved / name)
        (moved / "var/lib/maculaos").mkdir(parents=True)
        (moved / name).symlink_to(target)
        with pytest.raises(MaculaError, match="is not a directory in the slot"):
            sbom.embed(moved, INFO, tmp_path)
    assert not list(tmp_path.glob("sbom.cdx.json"))


def test_a_fifo_or_a_link_out_of_the_slot_is_never_read(tmp_path: Path) -> None:
    """A FIFO where a copyright file should be would block the build forever; a dpkg database
    linked to the build host's would list the host's packages."""
    root = _root(tmp_path)
    shutil.rmtree(root / "usr/share/doc/openssh-server")
    (root / "usr/share/doc/openssh-server").mkdir()
    os.mkfifo(root / "usr/share/doc/openssh-server/copyright")
    packages, found = sbom.from_tree(root)  # returns: nothing waits on the FIFO
    assert found["openssh-server"] == [] and len(packages) == 4
    (root / "var/lib/dpkg/status").unlink()
    (root / "var/lib/dpkg/status").symlink_to("/var/lib/dpkg/status")
    with pytest.raises(MaculaError, match="no dpkg database"):
        sbom.from_tree(root)
