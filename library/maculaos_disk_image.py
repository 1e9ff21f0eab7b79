#!/usr/bin/python
"""Ansible module: a declarative GPT layout -> raw disk image (file or block device)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: maculaos_disk_image
short_description: Write a GPT disk image from a declarative partition layout
description:
  - Validates the layout (names, types, sizes, 1 MiB alignment, that it fits the target and
    that every source fits its partition) before writing anything.
  - Creates filesystems without mounting (C(mkfs.vfat) + mtools, C(mkfs.ext4 -d)) and places
    them, and raw files such as squashfs slots, at their partition offsets.
  - Disk and partition GUIDs derive from a digest of all inputs, so an unchanged layout with
    unchanged sources is recognised from the partition table and reports C(changed=false).
options:
  target:
    description: Image file to create, or a block device to write.
    type: path
    required: true
  size_mib:
    description: Size of the image file in MiB. Required for a file; a block device has its own.
    type: int
  partitions:
    description: Partitions in disk order.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: GPT partition name (PARTLABEL), e.g. C(rootfs-a).
        type: str
        required: true
      type:
        description: C(esp), C(linux), C(root-x86-64), C(root-arm64) or a type GUID.
        type: str
        default: linux
      size_mib:
        description: Size in MiB; omit (null) for the one partition that takes the rest.
        type: int
      min_mib:
        description: Smallest acceptable size of the rest-of-disk partition.
        type: int
        default: 1
      filesystem:
        description: C(vfat) or C(ext4) (made here, filled from I(source) if given), C(raw)
          (I(source) file copied as is) or C(none).
        type: str
        default: none
        choices: [vfat, ext4, raw, none]
      source:
        description: Directory (vfat, ext4) or file (raw) to place in the partition.
        type: path
      label:
        description: Filesystem label.
        type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author: MaculaOS developers
"""

EXAMPLES = r"""
- name: Write the A/B disk
  maculaos_disk_image:
    target: /dev/vdb
    partitions:
      - {name: esp, type: esp, size_mib: 64, filesystem: vfat, source: /var/tmp/esp, label: ESP}
      - {name: rootfs-a, type: root-x86-64, size_mib: 1024, filesystem: raw,
         source: /var/tmp/rootfs.squashfs}
      - {name: rootfs-b, type: root-x86-64, size_mib: 1024}
      - {name: MACULAOS_STATE, type: linux, filesystem: ext4, label: MACULAOS_STATE, min_mib: 256}
"""

RETURN = r"""
partition_table:
  description: The written (or, in check mode, planned) table.
  returned: always
  type: dict
  sample:
    label: gpt
    disk_uuid: 9b0c...
    size_mib: 2400
    partitions:
      - {name: esp, start_sector: 2048, size_sectors: 131072, size_mib: 64, type: C12A...}
required_mib:
  description: Smallest disk the layout fits on.
  returned: always
  type: int
"""

import os
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.maculaos_disk import (
    MIB,
    LayoutError,
    check_sources,
    inputs_seed,
    parse_specs,
    plan,
    read_table,
    required_mib,
    same_table,
    target_size,
    write,
)


class DiskImage:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module

    def run_cmd(self, cmd: list[str], fail: bool = True) -> str:
        if cmd[:2] == ["sh", "-c"]:
            rc, out, err = self.module.run_command(
                cmd[2], use_unsafe_shell=True, environ_update={"LC_ALL": "C"}
            )
        else:
            rc, out, err = self.module.run_command(cmd, environ_update={"LC_ALL": "C"})
        if rc != 0:
            if not fail:
                raise subprocess.CalledProcessError(rc, cmd, out, err)
            self.module.fail_json(msg=f"{cmd[0]} failed (rc={rc}): {err.strip()}", command=cmd)
        return str(out)

    def probe(self, cmd: list[str]) -> str:
        """Like run_cmd, but a failure is an answer (e.g. no partition table yet)."""
        return self.run_cmd(cmd, fail=False)

    def run(self) -> None:
        p = self.module.params
        for tool in ("sfdisk", "mkfs.vfat", "mcopy", "mkfs.ext4"):
            self.module.get_bin_path(tool, required=True)
        target = p["target"]
        try:
            specs = parse_specs(p["partitions"])
            size = target_size(target)
            block = size is not None and not os.path.isfile(target)
            if not block:
                if not p["size_mib"]:
                    raise LayoutError("size_mib is required when target is a file")
                size = p["size_mib"] * MIB
            assert size is not None
            need = required_mib(specs)
            seed = inputs_seed(specs)
            wanted = plan(specs, size, seed)
            check_sources(specs, wanted)
        except LayoutError as e:
            self.module.fail_json(msg=str(e))
        current = read_table(target, self.probe) if os.path.exists(target) else None
        # a file of another size is not the image we want, whatever its table says
        changed = not same_table(current, wanted) or (not block and os.path.getsize(target) != size)
        if changed and not self.module.check_mode:
            write(wanted, target, seed, self.run_cmd, size_bytes=size)
        self.module.exit_json(
            changed=changed,
            partition_table=wanted.table(),
            required_mib=need,
            diff={"before": current or {}, "after": wanted.table()},
        )


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "target": {"type": "path", "required": True},
            "size_mib": {"type": "int"},
            "partitions": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "type": {"type": "str", "default": "linux"},
                    "size_mib": {"type": "int"},
                    "min_mib": {"type": "int", "default": 1},
                    "filesystem": {
                        "type": "str",
                        "default": "none",
                        "choices": ["vfat", "ext4", "raw", "none"],
                    },
                    "source": {"type": "path"},
                    "label": {"type": "str"},
                },
            },
        },
        supports_check_mode=True,
    )
    DiskImage(module).run()


if __name__ == "__main__":
    main()
