"""Issue 9 item 13: the fleet verifies who it talks to. Production inventories check SSH host
keys strictly against a known_hosts kept with the inventory; only the lab (test) inventory and
the throwaway build VM opt out, explicitly. (The VM tier shows a real node refused, then trusted
by its published fingerprint: tests/vm/test_node.py::test_item13_...)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*argv: str, inventory: Path | None = None) -> str:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True, text=True, check=True,
        cwd=REPO,
    ).stdout  # fmt: skip


def test_item13_ansible_cfg_does_not_switch_host_key_checking_off() -> None:
    dump = {
        d["name"]: d["value"]
        for d in json.loads(_run("ansible-config", "dump", "--format", "json"))
        if "name" in d
    }
    assert dump["HOST_KEY_CHECKING"] is True
    cfg = (REPO / "ansible.cfg").read_text()
    assert "StrictHostKeyChecking=no" not in cfg and "UserKnownHostsFile=/dev/null" not in cfg


def _host_vars(inventory: Path, tmp_path: Path) -> dict[str, object]:
    """The vars a node in ``inventory``'s edge group gets."""
    import yaml  # noqa: PLC0415

    doc = yaml.safe_load(inventory.read_text())
    doc["all"]["children"]["edge"]["hosts"] = {"node-1": {"ansible_host": "192.0.2.10"}}
    copy = tmp_path / "hosts.yml"
    copy.write_text(yaml.safe_dump(doc))
    return dict(json.loads(_run("ansible-inventory", "-i", str(copy), "--host", "node-1")))


def test_item13_edge_inventory_checks_host_keys_strictly(tmp_path: Path) -> None:
    v = _host_vars(REPO / "inventories/edge/hosts.yml", tmp_path)
    args = str(v["ansible_ssh_common_args"])
    assert "StrictHostKeyChecking=yes" in args
    assert "UserKnownHostsFile={{ inventory_dir }}/.known_hosts" in args
    assert v.get("ansible_host_key_checking", True) is not False
    assert (REPO / "inventories/edge/.known_hosts").is_file()


def test_item13_only_the_lab_inventory_opts_out(tmp_path: Path) -> None:
    v = _host_vars(REPO / "inventories/lab/hosts.yml", tmp_path)
    assert v["ansible_host_key_checking"] is False
    opted_out = [
        p.relative_to(REPO)
        for p in (REPO / "inventories").rglob("*.yml")
        if "StrictHostKeyChecking=no" in p.read_text()
    ]
    assert opted_out == [Path("inventories/lab/hosts.yml")]


def test_item13_trust_node_refuses_bad_arguments_without_touching_known_hosts(
    tmp_path: Path,
) -> None:
    inv = tmp_path / "inv"
    inv.mkdir()
    script = str(REPO / "scripts/trust-node.sh")
    for argv, expect in (
        (["-i", str(inv), "192.0.2.1", "md5:aa"], "not a SHA256"),
        (["-i", str(inv), "-p", "22;rm", "192.0.2.1", "SHA256:x"], "not a number"),
        (["-i", str(tmp_path / "none"), "192.0.2.1", "SHA256:x"], "no inventory directory"),
        (["-i", str(inv), "192.0.2.1"], "usage"),
        (["-i", str(inv), "-p", "70000", "192.0.2.1", "SHA256:x"], "from 1 to 65535"),
        (["-i", str(inv), "--", "-fkeys", "SHA256:x"], "not a host name"),
        (["-i", str(inv), "a.example,b.example", "SHA256:x"], "not a host name"),
    ):
        r = subprocess.run([script, *argv], check=False, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and expect in r.stderr, (argv, r)
    assert not (inv / ".known_hosts").exists()


def test_item13_the_edge_inventory_reads_only_inventory() -> None:
    """known_hosts lives in the inventory directory as a dot file: Ansible must not try (and
    warn about failing) to parse it as an inventory source."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    r = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(REPO / "inventories/edge"), "--list"],
        env=env, capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    assert "Unable to parse" not in r.stderr and "WARNING" not in r.stderr, r.stderr
