"""Issue 9 item 11: secrets stay secret (show, apply output, status and banner, the fleet
module's diff), and values written verbatim into files are checked by their real grammar."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from maculaos.config import cli, engine
from maculaos.config.validate import validate
from tests.unit.modhelper import run_module
from tests.unit.test_config_apply import paths, root, target

__all__ = ["root"]  # the fixture
TOKEN = "s3cr3t-t0ken"
SECRET_CONFIG = f"""
maculaos:
  gitops:
    upstream_sync: {{url: "https://deploy:{TOKEN}@git.example.com/fleet.git"}}
run_cmd: ["curl -fsS https://ci:{TOKEN}@hooks.example.com/up"]
write_files:
  - {{path: /etc/maculaos/token, content: "{TOKEN}", permissions: "0600", secret: true}}
  - {{path: /etc/maculaos/motd, content: "hello"}}
"""


def namespace(p: engine.Paths, **kw: Any) -> argparse.Namespace:
    return argparse.Namespace(config=str(p.node_config), state=str(p.state), **kw)


def test_item11_show_hides_secret_files_and_credentials(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = paths(root)
    p.node_config.write_text(SECRET_CONFIG)
    for as_json in (False, True):
        assert cli.cmd_show(namespace(p, json=as_json)) == 0
        out = capsys.readouterr().out
        assert TOKEN not in out
        doc = json.loads(out)["config"] if as_json else yaml.safe_load(out)
        files = doc["write_files"]
        assert files[0]["content"] == "<redacted>" and files[1]["content"] == "hello"
        assert doc["run_cmd"] == ["curl -fsS https://<redacted>@hooks.example.com/up"]


def test_item11_apply_output_status_and_banner_hide_credentials(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = paths(root)
    bad_url = f"ftp://deploy:{TOKEN}@git.example.com/fleet.git"  # not an allowed scheme
    p.state.mkdir(parents=True)
    (root / "usr/share/zoneinfo/UTC").write_bytes(b"TZif")
    p.node_config.write_text(SECRET_CONFIG.replace("https://deploy", "ftp://deploy"))
    result = engine.apply(p, target(root))
    assert any("maculaos.gitops.upstream_sync.url" in e for e in result.errors)
    shown = json.dumps([result.errors, result.changes])
    assert TOKEN not in shown and bad_url not in shown
    assert TOKEN not in p.status_file.read_text()
    assert TOKEN not in (root / "run/motd.d/50-maculaos-config").read_text()
    # the file itself is valid: the secret is written, and status/apply output never show it
    p.node_config.write_text(SECRET_CONFIG)
    result = engine.apply(p, target(root))
    assert result.errors == [] and (root / "etc/maculaos/token").read_text() == TOKEN
    status = p.status_file.read_text()
    assert TOKEN not in status and "https://<redacted>@hooks.example.com" in status
    assert cli.cmd_status(namespace(p, json=True)) == 0
    assert TOKEN not in capsys.readouterr().out


@pytest.mark.integration
def test_item11_the_fleet_module_diff_hides_secrets(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).parent / "maculaos")
    path = tmp_path / "config.yaml"
    config: dict[str, Any] = {
        "maculaos": {"timezone": "UTC"},
        "write_files": [{"path": "/etc/t", "content": TOKEN, "secret": True}],
        "run_cmd": [f"curl https://ci:{TOKEN}@hooks.example.com"],
    }
    args = {"config": config, "path": str(path), "apply": False, "executable": exe}
    first = run_module("maculaos_config", args, diff=True)
    assert not first["failed"], first
    assert TOKEN in path.read_text()  # the node gets the secret ...
    assert TOKEN not in json.dumps(first["diff"])  # ... the fleet's log does not
    assert "content: <redacted>" in first["diff"]["after"]
    config["write_files"][0]["content"] = TOKEN + "-2"
    second = run_module("maculaos_config", args, diff=True)
    assert second["changed"] and TOKEN not in json.dumps(second["diff"])
    assert "https://<redacted>@hooks.example.com" in second["diff"]["before"]


def test_item11_redact_is_schema_driven() -> None:
    from maculaos.config.redact import redact, redact_doc  # noqa: PLC0415 (new in item 11)

    assert redact("write_files", [{"path": "/x", "content": "a", "secret": True}]) == [
        {"path": "/x", "content": "<redacted>", "secret": True}
    ]
    assert redact("run_cmd", ["git clone https://u:p@h/r"]) == ["git clone https://<redacted>@h/r"]
    doc = {"maculaos": {"upgrade": {"url": "https://u:p@h"}}, "unknown": {"x": "ssh://a:b@c"}}
    assert redact_doc(doc) == {
        "maculaos": {"upgrade": {"url": "https://<redacted>@h"}},
        "unknown": {"x": "ssh://<redacted>@c"},
    }


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"maculaos": {"labels": {"macula.io/x": '"\n  - "evil=1'}}},
            "maculaos.labels['macula.io/x']: '\"\\n  - \"evil=1' must be a Kubernetes label value",
        ),
        (
            {"maculaos": {"labels": {"bad key": "x"}}},
            "maculaos.labels: key 'bad key' must be a Kubernetes label key",
        ),
        (
            {"maculaos": {"labels": {"Macula.IO/x": "x"}}},
            "maculaos.labels: key 'Macula.IO/x' must be a Kubernetes label key",
        ),
        (
            {"maculaos": {"labels": {"x": "a" * 64}}},
            "must be a Kubernetes label value: empty or 1-63",
        ),
        ({"sysctl": {"net..ipv4": "1"}}, "sysctl: key 'net..ipv4' must be a kernel parameter"),
        ({"sysctl": {"/proc/x": "1"}}, "sysctl: key '/proc/x' must be a kernel parameter"),
        ({"sysctl": {"net/../../x": "1"}}, "sysctl: key 'net/../../x' must be a kernel"),
        ({"sysctl": {"-net.ipv4.x": "1"}}, "sysctl: key '-net.ipv4.x' must be a kernel"),
        (
            {"sysctl": {"net.ipv4.ip_forward": "1\nkernel.panic = 1"}},
            "sysctl['net.ipv4.ip_forward']: '1\\nkernel.panic = 1' must be a number or one line",
        ),
        (
            {"maculaos": {"dns_nameservers": ["999.1.1.1"]}},
            "maculaos.dns_nameservers[0]: '999.1.1.1' must be an IPv4 or IPv6 address",
        ),
        (
            {"maculaos": {"dns_nameservers": ["::::"]}},
            "maculaos.dns_nameservers[0]: '::::' must be an IPv4 or IPv6 address",
        ),
        (
            {"ssh_authorized_keys": ["ssh-ed25519 AAAA x\rcommand=evil"]},
            "ssh_authorized_keys[0]",
        ),
        (
            {"write_files": [{"path": "/etc/x\n/etc/y", "content": ""}]},
            "write_files[0].path: '/etc/x\\n/etc/y' must be an absolute path",
        ),
        ({"write_files": [{"path": "/x", "secret": "yes"}]}, "write_files[0].secret: 'yes'"),
    ],
)
def test_item11_values_written_into_files_follow_their_grammar(doc: Any, message: str) -> None:
    errors = validate(doc)[1]
    assert any(message in e for e in errors), errors


def test_item11_good_values_still_pass() -> None:
    doc = {
        "maculaos": {
            "labels": {
                "macula.io/role": "edge",
                "macula.io/arch": "${ARCH}",
                "tier": 1,
                "node.kubernetes.io/empty": "",
            },
            "dns_nameservers": ["9.9.9.9", "2620:fe::fe", "fe80::1%eth0"],
        },
        "sysctl": {
            "net.ipv4.ip_forward": 1,
            "net/ipv4/conf/eth0.10/forwarding": "1",
            "net.ipv4.ping_group_range": "0 2147483647",
            "vm.swappiness": "10",
        },
        "write_files": [{"path": "/etc/x", "content": "a", "secret": False}],
    }
    assert validate(doc)[1] == []


def test_item11_status_hides_credentials_in_an_older_status_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    old = {"errors": [f"run_cmd: 'curl https://ci:{TOKEN}@h' exited 1"], "run_cmd": []}
    (state / "config-status.json").write_text(json.dumps(old))
    p = engine.Paths(node_config=tmp_path / "config.yaml", state=state)
    for as_json in (True, False):
        cli.cmd_status(namespace(p, json=as_json))
        out = capsys.readouterr().out
        assert TOKEN not in out and "https://<redacted>@h" in out
