"""Goal 3 of issue 10 on the client side: a release whose index offers a casync bundle is
installed from it (RAUC streams it and fetches only missing chunks), and every way that can
go wrong ends in the whole bundle or in a refusal, never in a slot nobody checked.

``maculaos upgrade --apply`` runs for real against an HTTP release server (the test double
of tests.support.release_server); RAUC is stood in (``rauc info``/``install``/``status``)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from maculaos import __main__ as cli_main
from maculaos.log import die
from maculaos.upgrade import cli, sources, state
from tests.support.release_server import serve
from tests.unit.test_upgrade_safety import Node

DIGEST = "50d7" * 16  # the slot image's sha256 in the casync bundle's manifest


class DeltaNode(Node):
    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(tmp, monkeypatch)
        self.calls: list[list[str]] = []
        self.install_rc = 0
        self.info_fails = False
        self.recorded = DIGEST  # the image sha256 rauc status reports after an install
        conf = tmp / "system.conf"
        conf.write_text("[system]\ncompatible=maculaos-amd64\nbundle-formats=plain verity\n")
        monkeypatch.setattr(cli, "SYSTEM_CONF", conf)
        monkeypatch.setattr(cli, "EXPECT", tmp / "run" / "upgrade-expect")
        self.expect_seen: list[str] = []
        monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
        inner = subprocess.run

        def run(argv: list[str], *a: Any, **kw: Any) -> Any:
            if argv[:1] in (["rauc"], ["systemctl"]):
                self.calls.append(list(argv))
            if argv[:1] == ["systemctl"]:  # never the host's
                return subprocess.CompletedProcess(argv, 0, "", "")
            if argv[:2] == ["rauc", "install"] and "://" in argv[2]:
                self.installed.append(argv[2])
                self.expect_seen.append(cli.EXPECT.read_text())
                return subprocess.CompletedProcess(argv, self.install_rc)
            if argv[:3] == ["rauc", "status", "--detailed"]:
                slot = {"bootname": "B", "slot_status": {"checksum": {"sha256": self.recorded}}}
                out = json.dumps({"slots": [{"rootfs.1": slot}]})
                return subprocess.CompletedProcess(argv, 0, out, "")
            if argv[:2] == ["rauc", "status"]:
                return subprocess.CompletedProcess(argv, 0, "", "")
            return inner(argv, *a, **kw)

        monkeypatch.setattr(subprocess, "run", run)

    def _rauc_info(self, bundle: Path | str) -> dict[str, Any]:  # type: ignore[override]
        if isinstance(bundle, str):
            if self.info_fails:
                die(f"{bundle} was refused: signature verification failed")
            version = bundle.rsplit("/", 1)[1].split("-")[2]
            return manifest("maculaos-amd64", version)
        return Node._rauc_info(bundle)

    def publish_delta(self, version: str, casync: Any = None) -> None:
        full = self.source / f"macula-os-{version}-amd64.raucb"
        full.write_bytes(f"bundle {version}".encode())
        delta = self.source / "casync" / full.name
        delta.parent.mkdir(exist_ok=True)
        delta.write_bytes(b"casync index bundle")
        entry = {
            "version": version, "channel": "stable", "arch": "amd64", "bundle": full.name,
            "sha256": hashlib.sha256(full.read_bytes()).hexdigest(),
            "size": full.stat().st_size,
            "casync": {"bundle": f"casync/{full.name}"} if casync is None else casync,
        }  # fmt: skip
        doc = {"format": sources.INDEX_FORMAT, "releases": [entry]}
        (self.source / "index.json").write_text(json.dumps(doc))


def manifest(compatible: str, version: str, digest: Any = DIGEST) -> dict[str, Any]:
    """What ``rauc info --output-format=json`` says of a casync bundle."""
    image = {"filename": "rootfs.squashfs.caibx", "checksum": digest, "size": 164769792}
    return {"compatible": compatible, "version": version, "images": [{"rootfs": image}]}


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DeltaNode:
    n = DeltaNode(tmp_path, monkeypatch)
    n.judged()
    return n


def apply(node: DeltaNode, *extra: str) -> tuple[int, list[tuple[str, str | None]]]:
    with serve(node.source) as (url, log):
        rc = cli_main.main(["upgrade", "--apply", "--from", url, *extra])
        return rc, list(log)


def test_the_casync_bundle_is_streamed_and_the_whole_bundle_never_fetched(
    node: DeltaNode, capsys: pytest.CaptureFixture[str]
) -> None:
    node.publish_delta("0.2.0")
    rc, log = apply(node)
    assert rc == 0
    assert [u.rsplit("/", 2)[1:] for u in node.installed] == [
        ["casync", "macula-os-0.2.0-amd64.raucb"]
    ]
    assert [p for p, _ in log] == ["/index.json"]  # RAUC (stood in) fetches the rest
    out = capsys.readouterr().out
    assert "only the chunks this node lacks are fetched" in out
    rec = state.load()["installs"]["B"]
    assert rec["status"] == "installed" and rec["source"].endswith(
        "casync/macula-os-0.2.0-amd64.raucb"
    )
    assert rec["sha256"] == hashlib.sha256(b"bundle 0.2.0").hexdigest()  # the release's identity


def test_full_takes_the_whole_bundle(node: DeltaNode, capsys: pytest.CaptureFixture[str]) -> None:
    node.publish_delta("0.2.0")
    rc, log = apply(node, "--full")
    assert rc == 0 and node.installed == ["macula-os-0.2.0-amd64.raucb"]
    assert "/macula-os-0.2.0-amd64.raucb" in [p for p, _ in log]
    assert "not using the casync bundle (--full)" in capsys.readouterr().out


def test_a_failed_casync_install_falls_back_to_the_whole_bundle(
    node: DeltaNode, capsys: pytest.CaptureFixture[str]
) -> None:
    node.publish_delta("0.2.0")
    node.install_rc = 1
    rc, _ = apply(node)
    assert rc == 0
    assert node.installed[-1] == "macula-os-0.2.0-amd64.raucb" and len(node.installed) == 2
    assert (
        "the casync install failed (rauc exit 1); taking the whole bundle"
        in capsys.readouterr().out
    )
    assert state.load()["installs"]["B"]["status"] == "installed"


def test_a_refused_casync_bundle_falls_back_to_the_whole_bundle(
    node: DeltaNode, capsys: pytest.CaptureFixture[str]
) -> None:
    node.publish_delta("0.2.0")
    node.info_fails = True
    rc, _ = apply(node)
    assert rc == 0 and node.installed == ["macula-os-0.2.0-amd64.raucb"]
    assert "signature verification failed; taking the whole bundle" in capsys.readouterr().out


def test_a_bundle_swapped_between_check_and_install_is_undone(
    node: DeltaNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server answers rauc info with one signed bundle and rauc install with another
    (an older release, say): the slot it wrote is marked bad and never boots."""
    node.publish_delta("0.2.0")
    node.recorded = "0bad" * 16
    rc, _ = apply(node)
    assert rc == 1
    err = capsys.readouterr().err
    assert "received another image" in err and "marked bad and will not boot" in err
    assert ["rauc", "status", "mark-active", "booted"] in node.calls
    assert ["rauc", "status", "mark-bad", "other"] in node.calls
    assert state.load()["installs"]["B"]["status"] == "failed"


@pytest.mark.parametrize(
    ("why", "setup"),
    [
        ("casync is not installed", lambda n, mp: mp.setattr(shutil, "which", lambda _: None)),
        (
            "does not allow verity",
            lambda n, mp: cli.SYSTEM_CONF.write_text("[system]\nbundle-formats=plain\n"),
        ),
        (
            "does not allow verity",
            lambda n, mp: cli.SYSTEM_CONF.write_text("[system]\nbundle-formats=-verity\n"),
        ),
    ],
)
def test_a_node_that_cannot_take_a_delta_says_why_and_takes_the_whole_bundle(
    node: DeltaNode, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    why: str, setup: Any,
) -> None:  # fmt: skip
    node.publish_delta("0.2.0")
    setup(node, monkeypatch)
    rc, _ = apply(node)
    assert rc == 0 and node.installed == ["macula-os-0.2.0-amd64.raucb"]
    assert why in capsys.readouterr().out


@pytest.mark.parametrize(
    "bad",
    [
        "casync/x.raucb",  # not an object
        {"bundle": 7},
        {"bundle": "casync/x.tar"},
        {"bundle": "file:///etc/shadow.raucb"},
        {"bundle": "ftp://host/x.raucb"},
        {"bundle": "https://127.0.0.1/casync/x.raucb"},  # the index is http: another scheme
        {"bundle": "//evil.example/x.raucb"},  # another host, scheme-relative
        {"bundle": "http://evil.example/x.raucb"},
        {"bundle": "http://user:pw@127.0.0.1/x.raucb"},
        {"bundle": "casync/x.raucb?x=1.raucb"},
        {"bundle": "casync/x\u0000.raucb"},
        {"bundle": "casync/\u001b[2Jx.raucb"},
        {"bundle": "a b.raucb"},
        {"bundle": "x" * 5000 + ".raucb"},
        [],
    ],
)
def test_a_malformed_casync_entry_is_said_and_the_whole_bundle_installs(
    node: DeltaNode, capsys: pytest.CaptureFixture[str], bad: Any
) -> None:
    """An index's casync entry is untrusted: whatever it holds, the node never streams from
    another server, a file, or a URL with credentials, and never stops updating over it."""
    node.publish_delta("0.2.0", casync=bad)
    rc, _ = apply(node)
    assert rc == 0 and node.installed == ["macula-os-0.2.0-amd64.raucb"]
    err = capsys.readouterr().err
    assert "releases[0].casync ignored" in err and "the whole bundle is used" in err
    assert "Traceback" not in err and "\x1b" not in err and "\x00" not in err


@pytest.mark.parametrize(
    ("manifest", "said"),
    [
        (manifest("maculaos-amd64", "0.1.9"), "says version 0.1.9"),
        (manifest("maculaos-arm64", "0.2.0"), "is for 'maculaos-arm64'"),
        ({"compatible": "maculaos-amd64", "version": "0.2.0"}, "names no image sha256"),
        (manifest("maculaos-amd64", "0.2.0", "../x"), "names no image sha256"),
        (manifest("maculaos-amd64", "0.2.0", None), "names no image sha256"),
    ],
)
def test_a_casync_manifest_that_does_not_match_the_release_is_not_installed(
    node: DeltaNode, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    manifest: dict[str, str], said: str,
) -> None:  # fmt: skip
    """The streamed manifest is checked as the whole bundle's is (compatible, version)."""
    node.publish_delta("0.2.0")
    whole = node._rauc_info

    def info(bundle: Path | str) -> dict[str, Any]:
        return dict(manifest) if isinstance(bundle, str) else whole(bundle)

    monkeypatch.setattr(cli, "rauc_info", info)
    rc, _ = apply(node)
    assert rc == 0 and node.installed == ["macula-os-0.2.0-amd64.raucb"]
    assert said in capsys.readouterr().out


def test_the_checked_manifest_is_handed_to_raucs_pre_install_check(node: DeltaNode) -> None:
    """RAUC's pre-install handler compares the bundle it is about to write with EXPECT,
    so a swapped bundle is refused even if this command is killed during the install."""
    node.publish_delta("0.2.0")
    assert apply(node)[0] == 0
    assert node.expect_seen == [DIGEST + "\n"] and not cli.EXPECT.exists()


def test_a_slot_rauc_cannot_describe_afterwards_is_kept_from_booting(
    node: DeltaNode, capsys: pytest.CaptureFixture[str]
) -> None:
    node.publish_delta("0.2.0")
    node.recorded = None  # type: ignore[assignment]
    rc, _ = apply(node)
    assert rc == 1
    assert "rauc status does not say which bundle it holds" in capsys.readouterr().err
    assert ["rauc", "status", "mark-bad", "other"] in node.calls
    assert state.load()["installs"]["B"]["status"] == "failed"


def test_a_failed_fallback_leaves_the_install_recorded_as_failed(
    node: DeltaNode, capsys: pytest.CaptureFixture[str]
) -> None:
    node.publish_delta("0.2.0")
    node.install_rc = 1
    (node.source / "macula-os-0.2.0-amd64.raucb").unlink()  # the whole bundle is gone too
    rc, _ = apply(node)
    assert rc == 1 and state.load()["installs"]["B"]["status"] == "failed"
    assert "HTTP 404" in capsys.readouterr().err


def test_the_timer_installs_from_the_casync_bundle(node: DeltaNode) -> None:
    node.publish_delta("0.2.0")
    node.cfg = {**node.cfg, "maculaos.upgrade.auto_apply": True}
    with serve(node.source) as (url, _):
        args = cli_main.parser().parse_args(["upgrade", "--auto", "--from", url])
        cli.run(args)
    assert len(node.installed) == 1 and "/casync/" in node.installed[0]
    assert ["systemctl", "reboot"] in node.calls


def test_a_local_source_never_uses_the_casync_entry(tmp_path: Path) -> None:
    """On a stick the whole bundle is right there: the entry is read, checked, not used."""
    doc = {
        "format": sources.INDEX_FORMAT,
        "releases": [{"version": "0.2.0", "arch": "amd64", "bundle": "b.raucb",
                      "casync": {"bundle": "casync/b.raucb"}}],
    }  # fmt: skip
    (tmp_path / "index.json").write_text(json.dumps(doc))
    (r,) = sources.list_releases(str(tmp_path))
    assert r.delta_url is None and r.url == str(tmp_path / "b.raucb")
