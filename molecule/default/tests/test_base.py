"""testinfra checks of the base role on a Debian trixie instance."""

from __future__ import annotations

from typing import Any


def test_login_user_key_only(host: Any) -> None:
    user = host.user("macula")
    assert user.exists and "sudo" in user.groups
    assert host.file("/home/macula/.ssh/authorized_keys").mode == 0o600
    assert "molecule" in host.file("/home/macula/.ssh/authorized_keys").content_string
    with host.sudo():
        config = host.check_output("sshd -T")
    assert "passwordauthentication no" in config


def test_tools_present(host: Any) -> None:
    for tool in ("vim", "nano", "btop", "htop", "fastfetch", "tmux", "curl", "jq", "rsync", "git"):
        assert host.exists(tool), tool


def test_networkd_and_identity_units(host: Any) -> None:
    assert host.service("systemd-networkd").is_enabled
    assert host.service("maculaos-config").is_enabled
    assert host.service("maculaos-ssh-hostkeys").is_enabled
    name = host.check_output("maculaos hostname")
    assert name.startswith("macula-") and len(name) == len("macula-0000")
    assert 'NAME="MaculaOS"' in host.file("/usr/lib/os-release").content_string


def test_config_cli_validates(host: Any) -> None:
    ok = host.run("echo 'maculaos: {timezone: UTC}' | maculaos config validate -")
    assert ok.rc == 0
    bad = host.run("echo 'maculaos: {timezone: 42}' | maculaos config validate -")
    assert bad.rc == 1 and "maculaos.timezone" in bad.stderr
