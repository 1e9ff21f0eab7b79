"""VM tier: boot the built image under QEMU (TCG + OVMF) and check it from outside.

The image is the newest ``output/*/macula-os-*-amd64.qcow2`` (or ``MACULAOS_IMAGE``); it is
built once by README's build command and only booted here. The SSH key is the one the build
baked in for the ``macula`` user (``cache/build-ssh``; ``MACULAOS_SSH_KEY`` to override).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from maculaos_build import vm as vmlib
from maculaos_build.paths import CACHE, OUTPUT


def built_image() -> Path:
    env = os.environ.get("MACULAOS_IMAGE")
    if env:
        return Path(env)
    images = sorted(OUTPUT.glob("*-amd64/macula-os-*-amd64.qcow2"), key=lambda p: p.stat().st_mtime)
    if not images:
        pytest.fail(
            "no built image in output/: run README's build command first "
            "(scripts/build.sh) or set MACULAOS_IMAGE"
        )
    return images[-1]


def ssh_key() -> Path:
    return Path(os.environ.get("MACULAOS_SSH_KEY", CACHE / "build-ssh" / "id_ed25519"))


@pytest.fixture(scope="session")
def image() -> Path:
    return built_image()


SECOND_KEY = CACHE / "test-ssh" / "id_ed25519"


def second_key() -> Path:
    """A key that only reaches the node through the seed config (ssh_authorized_keys)."""
    if not SECOND_KEY.exists():
        SECOND_KEY.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "seed-key",
                "-f",
                str(SECOND_KEY),
            ],
            check=True,
        )
    return SECOND_KEY


SEED = """\
maculaos:
  timezone: Europe/Berlin
  keyboard: de
  locale: de_DE.UTF-8
  labels:
    macula.io/role: edge
    macula.io/site: vm-lab
ssh_authorized_keys:
  - {key}
write_files:
  - path: /etc/maculaos/seeded.txt
    content: "seeded by the MACULAOS_CONFIG volume\\n"
    permissions: "0640"
"""


FOREIGN_DISK_GUID = "0b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8"


def foreign_disk(image: Path, workdir: Path) -> Path:
    """Another MaculaOS disk: the same image with GUIDs of its own, as another node's disk or
    an older image has them, behind a writable overlay (writes land in the overlay only, so
    a test can tell whether anything wrote to it)."""
    raw = workdir / "foreign.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    for n in range(1, 5):
        subprocess.run(
            ["sfdisk", "-q", "--part-uuid", str(raw), str(n), str(uuid.uuid4())],
            check=True,
            capture_output=True,
        )
    subprocess.run(
        ["sfdisk", "-q", "--disk-id", str(raw), FOREIGN_DISK_GUID], check=True, capture_output=True
    )
    overlay = workdir / "foreign.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(raw), "-F", "raw", str(overlay)],
        check=True,
    )
    return overlay


@pytest.fixture(scope="session")
def nodes(
    image: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[vmlib.VM, vmlib.VM]]:
    """Two nodes booted from the same image at the same time; the first with a seed volume
    (MACULAOS_CONFIG) carrying its config and a second MaculaOS disk attached (issue 9 item
    7: it must never be mounted, grown or written), the second node with neither."""
    pub = second_key().with_suffix(".pub").read_text().strip()
    seed = vmlib.seed_volume(SEED.format(key=pub), tmp_path_factory.mktemp("seed") / "seed.img")
    foreign = foreign_disk(image, tmp_path_factory.mktemp("foreign"))
    # the other disk comes first on the bus (vda): the kernel and blkid see it before the
    # node's own (vdb), as with an install stick in a lower USB port
    a = vmlib.VM(
        image=image,
        key=ssh_key(),
        extra_drives=[seed],
        extra_disks=[foreign],
        extra_disks_first=True,
    )
    b = vmlib.VM(image=image, key=ssh_key())
    with vmlib.running(a), vmlib.running(b):
        a.wait_ssh()
        b.wait_ssh()
        yield a, b


@pytest.fixture(scope="session")
def node(nodes: tuple[vmlib.VM, vmlib.VM]) -> vmlib.VM:
    return nodes[0]
