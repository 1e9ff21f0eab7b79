"""Layers: defaults < image < node file < kernel command line; show redacts secrets."""

from __future__ import annotations

from pathlib import Path

from maculaos.config import layers
from maculaos.config.redact import redact


def test_layers_in_order(tmp_path: Path) -> None:
    image = tmp_path / "image.yaml"
    node = tmp_path / "node.yaml"
    cmdline = tmp_path / "cmdline"
    image.write_text("maculaos: {timezone: Europe/Paris, keyboard: fr}\n")
    node.write_text("maculaos: {timezone: Europe/Berlin}\n")
    cmdline.write_text(
        "BOOT_IMAGE=/boot/vmlinuz root=PARTLABEL=rootfs-a rauc.slot=A maculaos.recovery=1 "
        "maculaos.timezone=Asia/Tokyo maculaos.mesh.roles.gateway=true "
        "maculaos.dns_nameservers=1.1.1.1,9.9.9.9 quiet\n"
    )
    eff = layers.load(node, image, cmdline, last_good=None)
    assert eff.errors == []
    assert eff.values["maculaos.timezone"] == "Asia/Tokyo"
    assert eff.sources["maculaos.timezone"] == "cmdline"
    assert eff.values["maculaos.keyboard"] == "fr" and eff.sources["maculaos.keyboard"] == "image"
    assert eff.values["maculaos.mesh.roles.gateway"] is True
    assert eff.values["maculaos.dns_nameservers"] == ["1.1.1.1", "9.9.9.9"]
    assert eff.values["maculaos.locale"] == "C.UTF-8"  # schema default
    assert eff.sources["maculaos.locale"] == "default"


def test_bad_cmdline_override_is_reported_and_ignored(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("maculaos.upgrade.channel=edge maculaos.nope=1\n")
    eff = layers.load(tmp_path / "none.yaml", tmp_path / "none2.yaml", cmdline, None)
    assert eff.values["maculaos.upgrade.channel"] == "stable"
    assert any("kernel command line: maculaos.upgrade.channel: 'edge'" in e for e in eff.errors)
    assert any("maculaos.nope is not a known key" in e for e in eff.errors)


def test_show_redacts_credentials_in_urls() -> None:
    url = "https://deploy:s3cret@git.example.com/fleet.git"
    shown = redact("maculaos.gitops.upstream_sync.url", url)
    assert "s3cret" not in shown and shown.startswith("https://<redacted>@git.example.com")
