"""Issue 9 item 14: one owner per fact. ``maculaos.layout`` owns the partition layout and
labels, the version rule and the RAUC compatible string; every copy elsewhere (Ansible YAML,
Jinja templates, systemd units, initramfs and helper scripts, Packer HCL) is checked here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from maculaos import layout
from maculaos.upgrade import bootenv
from maculaos_build import image
from tests.support import grubemu

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "ansible/roles"


def test_item14_the_image_role_writes_the_layout() -> None:
    tasks = yaml.safe_load((ROLES / "image/tasks/assemble.yml").read_text())
    disk = next(t for t in tasks if "maculaos_disk_image" in t)["maculaos_disk_image"]
    got = [(i + 1, p["name"], p.get("label")) for i, p in enumerate(disk["partitions"])]
    assert got == [(p.number, p.name, p.fs_label) for p in layout.PARTITIONS]


def test_item14_the_build_preflight_uses_the_layout() -> None:
    names = [p.name for p in image.image_layout(4096)]
    assert names == [p.name for p in layout.PARTITIONS]


def test_item14_grub_boots_each_slot_from_its_partition() -> None:
    cfg = grubemu.render()
    for name, part in layout.SLOTS.items():
        linux = re.findall(rf"linux \(\$\{{maculaos_disk\}},gpt(\d)\)/boot/vmlinuz "
                           rf"root=PARTLABEL=(\S+) rauc\.slot={name}\b", cfg)  # fmt: skip
        assert linux and set(linux) == {(str(part.number), part.name)}, (name, linux)


def test_item14_rauc_and_the_boot_environment_name_the_same_slots() -> None:
    conf = (ROLES / "upgrade/templates/etc/rauc/system.conf.j2").read_text()
    pairs = re.findall(r"device=/dev/disk/by-partlabel/(\S+)\ntype=raw\nbootname=(\w)", conf)
    assert sorted(pairs) == sorted((p.name, n) for n, p in layout.SLOTS.items())
    assert {n: p.name for n, p in layout.SLOTS.items()} == bootenv.PARTLABEL


@pytest.mark.parametrize(
    ("path", "partitions"),
    [
        ("upgrade/files/etc/systemd/system/efi.mount", (layout.ESP,)),
        (
            "kernel/files/etc/initramfs-tools/scripts/local-bottom/maculaos",
            (layout.STATE, layout.SLOT_A, layout.SLOT_B),  # the other slot: the /etc merge
        ),
    ],
)
def test_item14_units_and_scripts_find_partitions_by_the_layout_names(
    path: str, partitions: tuple[layout.Partition, ...]
) -> None:
    text = (ROLES / path).read_text()
    found = set(re.findall(r"/dev/disk/by-partlabel/([A-Za-z0-9_-]+)", text))
    assert found == {p.name for p in partitions}, (path, found)


def test_item14_the_boot_disk_finder_knows_the_layout() -> None:
    text = (ROLES / "kernel/files/etc/initramfs-tools/scripts/local-top/maculaos-disk").read_text()
    m = re.search(r'^PARTS="([^"]+)"$', text, re.M)
    assert m
    assert m[1].split() == [f"{p.number}:{p.name}" for p in layout.PARTITIONS]


def _version_regex_in_preflight() -> str:
    tasks = yaml.safe_load((ROLES / "image/tasks/preflight.yml").read_text())
    that = next(t for t in tasks if t.get("name") == "Check the version")
    m = re.search(r"match\('([^']+)'\)", that["ansible.builtin.assert"]["that"])
    assert m
    return m[1]


def _version_regex_in_packer() -> str:
    m = re.search(
        r'regex_replace\(var\.version, "([^"]+)"', (REPO / "packer/maculaos.pkr.hcl").read_text()
    )
    assert m
    return m[1]


def test_item14_one_version_rule_in_python_ansible_and_packer() -> None:
    assert _version_regex_in_preflight() == layout.VERSION_PATTERN
    assert _version_regex_in_packer() == layout.VERSION_PATTERN
    assert image.SEMVER is layout.VERSION


@pytest.mark.parametrize(
    ("version", "ok"),
    [("1.0.0", True), ("0.2.0", True), ("10.20.30", True), ("1.0.0-rc.1", True),
     ("1.0.0+build.5", True), ("1.0.0-rc.1+b", True), ("01.0.0", False), ("1.00.0", False),
     ("1.0", False), ("v1.0.0", False), ("1.0.0-", False), ("1.0.0 ", False), ("", False)],
)  # fmt: skip
def test_item14_the_version_rule(version: str, ok: bool) -> None:
    assert bool(layout.VERSION.match(version)) is ok


def test_item14_one_compatible_string() -> None:
    defaults = yaml.safe_load((ROLES / "upgrade/defaults/main.yml").read_text())
    assert defaults["upgrade_compatible"] == layout.compatible("{{ upgrade_arch }}")
    assert layout.compatible("amd64") == "maculaos-amd64"


def _packer_default(name: str) -> str:
    hcl = (REPO / "packer/maculaos.pkr.hcl").read_text()
    m = re.search(rf'variable "{name}" {{[^}}]*?default\s*=\s*"?([^"\n]+)"?\n', hcl, re.S)
    assert m, name
    return m[1].strip()


def test_item14_image_defaults_have_one_owner() -> None:
    """The image role's defaults; the build CLI reads them, Packer's variables repeat them."""
    from maculaos_build.__main__ import parser  # noqa: PLC0415

    d = image.role_defaults()
    args = parser().parse_args(["image"])
    assert args.image_size_mib == int(d["image_target_size_mib"])
    assert args.compression == d["image_squashfs_compression"]
    assert int(_packer_default("image_size_mib")) == int(d["image_target_size_mib"])
    assert _packer_default("squashfs_compression") == d["image_squashfs_compression"]
    assert _packer_default("version") == d["image_version"] == args.version
    assert _packer_default("arch") == args.arch.value == "amd64"
    assert (
        image.BuildOptions.__dataclass_fields__["compression"].default
        == (d["image_squashfs_compression"])
    )


def test_item7_boot_loader_words_are_not_taken_for_config_keys() -> None:
    """Every maculaos.* word GRUB puts on the kernel command line is a boot fact the config
    layer skips (else the node's config turns invalid at every boot)."""
    from maculaos.config import paths, schema  # noqa: PLC0415

    words = set(re.findall(r"\b(maculaos\.[a-z_.]+)=", grubemu.render()))
    assert "maculaos.esp" in words
    keys = {k.path for k in schema.KEYS}
    assert words <= set(paths.BOOT_WORDS) | keys, words - set(paths.BOOT_WORDS)
