"""The one table of configuration keys: type, default, allowed values, description.

It drives validation, defaults, ``maculaos config --help`` text and docs/config-reference.md.
Standard library only (the fleet module ships it to nodes as module_utils).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], str | None]  # returns an error ("must be ...") or None


@dataclasses.dataclass(frozen=True)
class Key:
    path: str
    type: str  # str, int, bool, list[str], dict[str,str], list[dict], map
    default: Any
    description: str
    allowed: tuple[Any, ...] = ()
    check: Check | None = None
    secret: bool = False
    acted_on: bool = True  # False: validated now, applied by a later issue
    item_keys: tuple[str, ...] = ()  # for list[dict]: allowed keys of each item
    key_check: Check | None = None  # for dict[str,str]: each key (``check``: each value)


def _regex(pattern: str, what: str) -> Check:
    # the patterns use ASCII classes ([0-9], not \d): the same text is a JSON Schema pattern,
    # which editors (ECMA-262) and Python read alike only then (test_config_schema_json)
    rx = re.compile(pattern, re.ASCII)

    def check(value: Any) -> str | None:
        return None if isinstance(value, str) and rx.fullmatch(value) else f"must be {what}"

    check.json_schema = {"pattern": f"^(?:{pattern})$"}  # type: ignore[attr-defined]
    return check


HOSTNAME = _regex(
    r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\$\{RANDOM_SUFFIX\})?|"
    r"[a-z0-9][a-z0-9-]*-\$\{RANDOM_SUFFIX\}",
    "a hostname (a-z, 0-9, '-'; may end in ${RANDOM_SUFFIX})",
)


def ip_address(value: Any) -> str | None:
    try:
        if isinstance(value, str):
            ipaddress.ip_address(value)
            return None
    except ValueError:
        pass
    return "must be an IPv4 or IPv6 address like 9.9.9.9 or 2620:fe::fe"


IPADDR = ip_address
TIMEZONE = _regex(
    r"UTC|[A-Z][A-Za-z_+-]+(/[A-Za-z0-9_+-]+){0,2}", "an IANA time zone like Europe/Berlin or UTC"
)
LOCALE = _regex(
    r"[a-z]{2,3}(_[A-Z]{2})?(\.(UTF-8|utf8))?(@[A-Za-z0-9_]+)?|C(\.UTF-8)?|POSIX",
    "a locale like de_DE.UTF-8 or C.UTF-8",
)
KEYMAP = _regex(r"[a-z]{2,8}([-_][a-z0-9]+)*", "a console keymap like us, de or fr")
DURATION = _regex(r"[0-9]+[smhd]", "a duration like 30s, 5m, 7d")
PERCENT = _regex(r"[0-9]{1,3}%", "a percentage like 10%")
SIZE = _regex(r"[0-9]+[KMGT]?", "a size like 4G or 512M")
MODULE = _regex(r"[A-Za-z0-9_-]+", "a kernel module name")
SSH_KEY = _regex(
    r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp[0-9]+|sk-\S+) [A-Za-z0-9+/=]+( [^\x00-\x1f\x7f]*)?",
    "an SSH public key line (ssh-ed25519 AAAA... comment)",
)


# Kubernetes label syntax (k8s.io/apimachinery validation): [prefix/]name, the prefix a DNS
# subdomain of at most 253 characters, the name and the value at most 63 characters of
# [A-Za-z0-9-_.] starting and ending alphanumeric; a value may be empty.
LABEL_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
DNS_SUBDOMAIN = re.compile(rf"{DNS_LABEL}(\.{DNS_LABEL})*")


def label_key(key: Any) -> str | None:
    prefix, slash, name = str(key).rpartition("/")
    if LABEL_NAME.fullmatch(name) and (
        not slash or (len(prefix) <= 253 and DNS_SUBDOMAIN.fullmatch(prefix))
    ):
        return None
    return (
        "must be a Kubernetes label key: [prefix/]name, the name 1-63 of A-Z a-z 0-9 - _ . "
        "starting and ending alphanumeric, the prefix a DNS name like macula.io"
    )


def label_value(value: Any) -> str | None:
    text = str(value).replace("${ARCH}", "arm64")
    if text == "" or LABEL_NAME.fullmatch(text):
        return None
    return (
        "must be a Kubernetes label value: empty or 1-63 of A-Z a-z 0-9 - _ . starting and "
        "ending alphanumeric (${ARCH} allowed)"
    )


# sysctl.d(5) keys: dotted (net.ipv4.ip_forward) or slashed (net/ipv4/conf/eth0.10/forwarding,
# where a dot is part of a name); no empty, '.' or '..' parts, no leading '-' (which would make
# systemd-sysctl ignore a failure) or '/', no globs.
SYSCTL_KEY = re.compile(
    r"[A-Za-z0-9_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*|[A-Za-z0-9_][\w.-]*(/[\w.-]+)+"
)
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def sysctl_key(key: Any) -> str | None:
    text = str(key)
    if text.isascii() and SYSCTL_KEY.fullmatch(text) and not {".", ".."} & set(text.split("/")):
        return None
    return (
        "must be a kernel parameter name like net.ipv4.ip_forward or net/ipv4/conf/eth0/rp_filter"
    )


def sysctl_value(value: Any) -> str | None:
    if isinstance(value, bool) or str(value).strip() == "" or CONTROL.search(str(value)):
        return "must be a number or one line of text (no newline or control characters)"
    return None


def _int_range(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        return None if ok else f"must be a whole number {low}-{high}"

    check.json_schema = {"minimum": low, "maximum": high}  # type: ignore[attr-defined]
    return check


def port_number(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
    return None if ok else "must be a port number 1-65535"


URL = _regex(
    r"(https?|github)://\S+|/\S*", "a URL (https://, http://, github://owner/repo) or a /path"
)
UNIT = _regex(
    r"[A-Za-z0-9@_.:-]+\.(service|target|mount|socket|timer|path)", "a unit name like ssh.service"
)

KEYS: tuple[Key, ...] = (
    Key(
        "maculaos.hostname",
        "str",
        "macula-${RANDOM_SUFFIX}",
        "Hostname; ${RANDOM_SUFFIX} becomes 4 hex digits of the primary MAC.",
        check=HOSTNAME,
    ),
    Key(
        "maculaos.dns_nameservers", "list[str]", [], "DNS servers (empty: from DHCP).", check=IPADDR
    ),
    Key(
        "maculaos.labels",
        "dict[str,str]",
        {"macula.io/role": "edge"},
        "k3s node labels (Kubernetes label syntax); ${ARCH} becomes the architecture.",
        check=label_value,
        key_check=label_key,
    ),
    Key(
        "maculaos.modules",
        "list[str]",
        ["br_netfilter", "overlay"],
        "Kernel modules to load.",
        check=MODULE,
    ),
    Key("maculaos.keyboard", "str", "us", "Console keyboard layout.", check=KEYMAP),
    Key("maculaos.timezone", "str", "UTC", "Time zone.", check=TIMEZONE),
    Key("maculaos.locale", "str", "C.UTF-8", "System locale (LANG).", check=LOCALE),
    Key(
        "maculaos.mesh.roles.bootstrap",
        "bool",
        False,
        "Serve as DHT bootstrap entry point.",
        acted_on=False,
    ),
    Key(
        "maculaos.mesh.roles.gateway",
        "bool",
        False,
        "Relay traffic for NAT'd peers.",
        acted_on=False,
    ),
    Key(
        "maculaos.mesh.bootstrap_peers",
        "list[str]",
        ["https://boot.macula.io:443"],
        "Bootstrap peers to join.",
        check=URL,
        acted_on=False,
    ),
    Key(
        "maculaos.mesh.realm",
        "str",
        "io.macula",
        "Realm (reverse domain notation).",
        check=_regex(r"[a-z0-9-]+(\.[a-z0-9-]+)+", "a reverse domain like io.macula"),
        acted_on=False,
    ),
    Key(
        "maculaos.mesh.tls_mode",
        "str",
        "development",
        "TLS certificates: self-signed or verified.",
        allowed=("development", "production"),
        acted_on=False,
    ),
    Key("maculaos.live.persistence", "bool", False, "Keep changes in live mode.", acted_on=False),
    Key(
        "maculaos.live.persistence_device",
        "str",
        "auto",
        "Device for live persistence (auto or /dev/...).",
        check=_regex(r"auto|/dev/\S+", "auto or a /dev path"),
        acted_on=False,
    ),
    Key(
        "maculaos.live.persistence_size",
        "str",
        "4G",
        "Size of the persistence partition.",
        check=SIZE,
        acted_on=False,
    ),
    Key(
        "maculaos.upgrade.channel",
        "str",
        "stable",
        "Release channel.",
        allowed=("stable", "beta", "nightly"),
    ),
    Key(
        "maculaos.upgrade.auto_check",
        "bool",
        True,
        "Check for updates daily and on boot (maculaos-upgrade.timer); the result is logged.",
    ),
    Key(
        "maculaos.upgrade.auto_apply",
        "bool",
        False,
        "Install a newer release found by the timer and reboot into it (rolls back by itself).",
    ),
    Key(
        "maculaos.upgrade.url",
        "str",
        "github://macula-io/macula-os",
        "Update source: github://owner/repo, an https:// index, or a local directory.",
        check=URL,
    ),
    Key(
        "maculaos.upgrade.max_tries",
        "int",
        3,
        "Boots a newly installed slot gets to become healthy before GRUB falls back (1-9).",
        check=_int_range(1, 9),
    ),
    Key(
        "maculaos.upgrade.health_timeout",
        "int",
        300,
        "Seconds a boot may take to become healthy before it counts as failed.",
        check=_int_range(30, 3600),
    ),
    Key(
        "maculaos.upgrade.health_units",
        "list[str]",
        ["maculaos-config.service", "systemd-networkd.service", "ssh.service"],
        "Units that must be active for a boot to be healthy (k3s/mesh units join when enabled).",
        check=UNIT,
    ),
    Key(
        "maculaos.upgrade.health_network",
        "bool",
        True,
        "A boot is healthy only with a default route and a routable address.",
    ),
    Key("maculaos.gitops.enabled", "bool", False, "Run the local git server.", acted_on=False),
    Key(
        "maculaos.gitops.server",
        "str",
        "soft-serve",
        "Git server.",
        allowed=("soft-serve", "gitea", "git-daemon"),
        acted_on=False,
    ),
    Key(
        "maculaos.gitops.port",
        "int",
        23231,
        "Git server SSH port.",
        check=port_number,
        acted_on=False,
    ),
    Key(
        "maculaos.gitops.data_path",
        "str",
        "/var/lib/maculaos/git",
        "Repository storage.",
        check=_regex(r"/\S*", "an absolute path"),
        acted_on=False,
    ),
    Key(
        "maculaos.gitops.upstream_sync.enabled",
        "bool",
        False,
        "Mirror an upstream repo.",
        acted_on=False,
    ),
    Key(
        "maculaos.gitops.upstream_sync.url",
        "str",
        "",
        "Upstream repository URL.",
        check=_regex(r"|(https?|ssh|git)://\S+|git@\S+", "a git URL or empty"),
        acted_on=False,
    ),
    Key(
        "maculaos.gitops.upstream_sync.interval",
        "str",
        "5m",
        "Sync interval.",
        check=DURATION,
        acted_on=False,
    ),
    Key("maculaos.registry.enabled", "bool", True, "P2P image registry.", acted_on=False),
    Key(
        "maculaos.registry.mode",
        "str",
        "spegel",
        "Registry mode.",
        allowed=("spegel", "local"),
        acted_on=False,
    ),
    Key(
        "maculaos.registry.pull_through_cache",
        "bool",
        True,
        "Cache upstream pulls.",
        acted_on=False,
    ),
    Key(
        "maculaos.registry.mirrors",
        "map",
        {"docker.io": [], "ghcr.io": [], "quay.io": []},
        "Registry mirrors: registry -> list of endpoints.",
        acted_on=False,
    ),
    Key("maculaos.observability.metrics.enabled", "bool", True, "Collect metrics.", acted_on=False),
    Key(
        "maculaos.observability.metrics.node_exporter",
        "bool",
        True,
        "Run node exporter.",
        acted_on=False,
    ),
    Key(
        "maculaos.observability.metrics.retention",
        "str",
        "7d",
        "Local metrics retention.",
        check=DURATION,
        acted_on=False,
    ),
    Key(
        "maculaos.observability.metrics.mesh_sync",
        "bool",
        True,
        "Sync to the mesh.",
        acted_on=False,
    ),
    Key("maculaos.observability.logs.enabled", "bool", True, "Collect logs.", acted_on=False),
    Key(
        "maculaos.observability.logs.driver",
        "str",
        "fluent-bit",
        "Log shipper.",
        allowed=("fluent-bit", "vector"),
        acted_on=False,
    ),
    Key(
        "maculaos.observability.logs.retention",
        "str",
        "3d",
        "Local log retention.",
        check=DURATION,
        acted_on=False,
    ),
    Key(
        "maculaos.observability.logs.forward_to",
        "str",
        "",
        "Central aggregator (optional).",
        acted_on=False,
    ),
    Key("maculaos.security.wireguard.enabled", "bool", True, "Mesh VPN tunnels.", acted_on=False),
    Key(
        "maculaos.security.wireguard.mesh_interface",
        "str",
        "wg-mesh",
        "Interface name.",
        check=_regex(r"[A-Za-z0-9_-]{1,15}", "an interface name (max 15 chars)"),
        acted_on=False,
    ),
    Key(
        "maculaos.security.wireguard.port",
        "int",
        51820,
        "WireGuard port.",
        check=port_number,
        acted_on=False,
    ),
    Key("maculaos.security.firewall.enabled", "bool", True, "nftables firewall.", acted_on=False),
    Key(
        "maculaos.security.firewall.default_policy",
        "str",
        "drop",
        "Inbound default.",
        allowed=("drop", "accept"),
        acted_on=False,
    ),
    Key(
        "maculaos.security.firewall.allow_mesh", "bool", True, "Allow mesh traffic.", acted_on=False
    ),
    Key(
        "maculaos.security.firewall.allow_ssh", "bool", True, "Allow SSH (22/tcp).", acted_on=False
    ),
    Key(
        "maculaos.security.local_ca.enabled",
        "bool",
        True,
        "Issue node certificates.",
        acted_on=False,
    ),
    Key(
        "maculaos.security.local_ca.path",
        "str",
        "/var/lib/maculaos/ca",
        "CA storage.",
        check=_regex(r"/\S*", "an absolute path"),
        acted_on=False,
    ),
    Key("maculaos.edge.mqtt.enabled", "bool", False, "MQTT broker (mosquitto).", acted_on=False),
    Key("maculaos.edge.mqtt.port", "int", 1883, "MQTT port.", check=port_number, acted_on=False),
    Key(
        "maculaos.edge.mqtt.websocket_port",
        "int",
        9001,
        "MQTT websocket port.",
        check=port_number,
        acted_on=False,
    ),
    Key("maculaos.edge.time_sync.enabled", "bool", True, "NTP client (chrony).", acted_on=False),
    Key(
        "maculaos.edge.time_sync.servers",
        "list[str]",
        ["pool.ntp.org"],
        "NTP servers.",
        acted_on=False,
    ),
    Key(
        "maculaos.edge.time_sync.serve_to_lan",
        "bool",
        True,
        "Serve NTP to the LAN.",
        acted_on=False,
    ),
    Key("maculaos.edge.power.enabled", "bool", False, "Battery/solar awareness.", acted_on=False),
    Key(
        "maculaos.edge.power.shutdown_threshold",
        "str",
        "10%",
        "Shut down below this charge.",
        check=PERCENT,
        acted_on=False,
    ),
    Key(
        "maculaos.edge.power.wakeup_schedule",
        "str",
        "",
        "Cron expression for wake-up.",
        acted_on=False,
    ),
    Key(
        "k3s.args",
        "list[str]",
        [
            "server",
            "--disable=traefik",
            "--disable=servicelb",
            "--write-kubeconfig-mode=644",
            "--data-dir=/var/lib/rancher/k3s",
        ],
        "k3s command line.",
        acted_on=False,
    ),
    Key("k3s.airgap", "bool", True, "Use pre-loaded images only.", acted_on=False),
    Key("network.dhcp", "bool", True, "DHCP on wired interfaces.", acted_on=False),
    Key("ssh_authorized_keys", "list[str]", [], "SSH keys of the macula user.", check=SSH_KEY),
    Key("run_cmd", "list[str]", [], "Commands run after every successful apply (as root)."),
    Key(
        "write_files",
        "list[dict]",
        [],
        "Files to write: path, content, permissions, owner, encoding (text, b64), secret "
        "(true: content never shown).",
        item_keys=("path", "content", "permissions", "owner", "encoding", "secret"),
    ),
    Key(
        "sysctl",
        "dict[str,str]",
        {},
        "Kernel parameters (sysctl -w).",
        check=sysctl_value,
        key_check=sysctl_key,
    ),
)
BY_PATH = {k.path: k for k in KEYS}
