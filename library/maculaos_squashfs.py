#!/usr/bin/python
"""Ansible module: a root tree -> reproducible squashfs image."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: maculaos_squashfs
short_description: Make a reproducible squashfs image of a directory tree
description:
  - Runs C(mksquashfs) with pinned timestamps (SOURCE_DATE_EPOCH), block size and compressor,
    and explicit excludes, so the same tree gives the same bytes.
  - The image is built into a temporary file next to I(dest) and only replaces I(dest) when
    its sha256 differs, so an unchanged tree reports C(changed=false).
  - In check mode the image is built in a temporary file and discarded; nothing else changes.
options:
  src:
    description: Directory to pack (e.g. a bind mount of C(/)).
    type: path
    required: true
  dest:
    description: Output squashfs file.
    type: path
    required: true
  compression:
    description:
      - Compressor. GRUB reads only xz, gzip and lzo squashfs (and an uncompressed one).
      - C(none) compresses nothing, for a build host that compresses the tree again.
    type: str
    default: xz
    choices: [xz, gzip, zstd, lzo, lz4, none]
  compression_opts:
    description: Extra compressor options, e.g. C([-Xbcj, x86]).
    type: list
    elements: str
    default: []
  block_size:
    description: squashfs block size.
    type: str
    default: 256K
  excludes:
    description: Extra wildcard patterns, relative to I(src), added to the built-in excludes.
    type: list
    elements: str
    default: []
  source_date_epoch:
    description: Every timestamp in the image is set to this (seconds since 1970).
    type: int
    default: 0
  processors:
    description: mksquashfs threads (default all).
    type: int
  one_file_system:
    description:
      - Do not cross filesystem boundaries; mount points become empty directories. Lets I(src)
        be a running C(/) (squashfs-tools 4.6 or later).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author: MaculaOS developers
"""

EXAMPLES = r"""
- name: Pack the root tree
  maculaos_squashfs:
    src: /mnt/rootfs
    dest: /var/tmp/image/rootfs.squashfs
    compression: xz
    compression_opts: [-Xbcj, x86]
    source_date_epoch: 1700000000
"""

RETURN = r"""
size:
  description: Size of the image in bytes.
  returned: always
  type: int
sha256:
  description: sha256 of the image.
  returned: always
  type: str
command:
  description: The mksquashfs command line.
  returned: always
  type: list
  elements: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.maculaos_squashfs import (
    SquashfsError,
    SquashfsSpec,
    command,
    default_excludes,
    sha256,
    validate,
)


class Squashfs:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        p = module.params
        self.spec = SquashfsSpec(
            source=p["src"],
            dest=p["dest"],
            compression=p["compression"],
            compression_opts=tuple(p["compression_opts"]),
            block_size=p["block_size"],
            excludes=default_excludes(p["excludes"]),
            source_date_epoch=p["source_date_epoch"],
            processors=p["processors"],
            one_file_system=p["one_file_system"],
        )

    def run(self) -> None:
        try:
            validate(self.spec)
        except SquashfsError as e:
            self.module.fail_json(msg=str(e))
        binary = self.module.get_bin_path("mksquashfs", required=True)
        dest_dir = os.path.dirname(self.spec.dest) or "."
        if not os.path.isdir(dest_dir):
            if self.module.check_mode:
                dest_dir = tempfile.gettempdir()
            else:
                os.makedirs(dest_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".squashfs-", dir=dest_dir)
        os.close(fd)
        try:
            cmd = command(self.spec, tmp, binary)
            # timestamps come from -mkfs-time/-all-time; mksquashfs refuses both at once
            os.environ.pop("SOURCE_DATE_EPOCH", None)
            rc, out, err = self.module.run_command(cmd, environ_update={"LC_ALL": "C"})
            if rc != 0:
                self.module.fail_json(
                    msg=f"mksquashfs failed (rc={rc}): {err.strip()}",
                    command=cmd,
                    stdout=out,
                    stderr=err,
                )
            new = sha256(tmp)
            old = sha256(self.spec.dest) if os.path.exists(self.spec.dest) else None
            changed = new != old
            result = {
                "changed": changed,
                "size": os.path.getsize(tmp),
                "sha256": new,
                "command": cmd,
                "dest": self.spec.dest,
                "diff": {"before": {"sha256": old}, "after": {"sha256": new}},
            }
            if changed and not self.module.check_mode:
                os.chmod(tmp, 0o644)
                os.replace(tmp, self.spec.dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.module.exit_json(**result)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "compression": {
                "type": "str",
                "default": "xz",
                "choices": ["xz", "gzip", "zstd", "lzo", "lz4", "none"],
            },
            "compression_opts": {"type": "list", "elements": "str", "default": []},
            "block_size": {"type": "str", "default": "256K"},
            "excludes": {"type": "list", "elements": "str", "default": []},
            "source_date_epoch": {"type": "int", "default": 0},
            "processors": {"type": "int"},
            "one_file_system": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    Squashfs(module).run()


if __name__ == "__main__":
    main()
