"""The config schema: every key validated, errors name the key path, value and what is allowed;
random and malformed YAML never raises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from maculaos.config import schema
from maculaos.config.docs import render
from maculaos.config.validate import defaults, parse, validate

PLAN_EXAMPLE = """
maculaos:
  hostname: macula-${RANDOM_SUFFIX}
  dns_nameservers: [1.1.1.1, 8.8.8.8]
  labels: {macula.io/role: edge, macula.io/arch: "${ARCH}"}
  modules: [br_netfilter, overlay]
  keyboard: de
  timezone: Europe/Berlin
  locale: de_DE.UTF-8
  mesh:
    roles: {bootstrap: false, gateway: false}
    bootstrap_peers: ["https://boot.macula.io:443"]
    realm: io.macula
    tls_mode: development
  live: {persistence: true, persistence_device: auto, persistence_size: 4G}
  upgrade: {channel: stable, auto_check: true, auto_apply: false,
            url: "github://macula-io/macula-os"}
  gitops:
    enabled: true
    server: soft-serve
    port: 23231
    data_path: /var/lib/maculaos/git
    upstream_sync: {enabled: true, url: "https://github.com/org/fleet-repo", interval: 5m}
  registry: {enabled: true, mode: spegel, pull_through_cache: true,
             mirrors: {docker.io: [], ghcr.io: [], quay.io: []}}
  observability:
    metrics: {enabled: true, node_exporter: true, retention: 7d, mesh_sync: true}
    logs: {enabled: true, driver: fluent-bit, retention: 3d, forward_to: ""}
  security:
    wireguard: {enabled: true, mesh_interface: wg-mesh, port: 51820}
    firewall: {enabled: true, default_policy: drop, allow_mesh: true, allow_ssh: true}
    local_ca: {enabled: true, path: /var/lib/maculaos/ca}
  edge:
    mqtt: {enabled: false, port: 1883, websocket_port: 9001}
    time_sync: {enabled: true, servers: [pool.ntp.org], serve_to_lan: true}
    power: {enabled: false, shutdown_threshold: 10%, wakeup_schedule: ""}
k3s:
  args: [server, --disable=traefik, --disable=servicelb, --write-kubeconfig-mode=644,
         --data-dir=/var/lib/rancher/k3s]
  airgap: true
network: {dhcp: true}
ssh_authorized_keys: []
run_cmd: [/opt/macula/scripts/firstboot-check.sh]
"""


def test_every_key_of_the_plan_validates() -> None:
    values, errors = validate(yaml.safe_load(PLAN_EXAMPLE))
    assert errors == []
    ours = {"write_files", "sysctl"} | {
        f"maculaos.upgrade.{k}"
        for k in ("max_tries", "health_timeout", "health_units", "health_network")
    }  # what users of such files expect beyond the plan's keys
    plan_keys = {k.path for k in schema.KEYS} - ours
    assert set(values) == plan_keys


def test_defaults_are_valid() -> None:
    doc: dict[str, Any] = {}
    for path, value in defaults().items():
        node = doc
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    assert validate(doc)[1] == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"maculaos": {"timezone": "Mars/Olympus Mons"}},
            "maculaos.timezone: 'Mars/Olympus Mons' must be an IANA time zone",
        ),
        (
            {"maculaos": {"upgrade": {"channel": "edge"}}},
            "maculaos.upgrade.channel: 'edge' is not allowed; use one of: stable, beta, nightly",
        ),
        (
            {"maculaos": {"gitops": {"port": 70000}}},
            "maculaos.gitops.port: 70000 must be a port number 1-65535",
        ),
        (
            {"maculaos": {"mesh": {"roles": {"gateway": "yes"}}}},
            "maculaos.mesh.roles.gateway: 'yes' must be true or false",
        ),
        ({"maculaos": {"timezon": "UTC"}}, "maculaos.timezon is not a known key; known keys here:"),
        (
            {"ssh_authorized_keys": ["not a key"]},
            "ssh_authorized_keys[0]: 'not a key' must be an SSH public key line",
        ),
        (
            {"write_files": [{"path": "etc/x", "content": "y"}]},
            "write_files[0].path: 'etc/x' must be an absolute path",
        ),
        (
            {"write_files": [{"path": "/etc/x", "mode": "0644"}]},
            "write_files[0].mode is not a known key",
        ),
        (
            {"maculaos": {"dns_nameservers": "1.1.1.1"}},
            "maculaos.dns_nameservers: '1.1.1.1' must be a list of strings",
        ),
        ([1, 2], "the document must be a mapping of keys, got list"),
    ],
)
def test_errors_name_path_value_and_allowed(doc: Any, message: str) -> None:
    errors = validate(doc)[1]
    assert any(message in e for e in errors), errors


def test_yaml_syntax_error_names_the_position() -> None:
    doc, errors = parse("maculaos:\n  timezone: [unclosed\n", "config.yaml")
    assert doc is None
    assert errors and errors[0].startswith("config.yaml: invalid YAML at line 3")


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(
        st.sampled_from(
            [
                "maculaos",
                "mesh",
                "roles",
                "timezone",
                "k3s",
                "args",
                "write_files",
                "path",
                "x",
                "upgrade",
                "channel",
            ]
        )
        | st.text(max_size=5),
        inner,
        max_size=4,
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(yaml_values)
def test_random_documents_never_raise(doc: Any) -> None:
    _, errors = validate(doc)
    for e in errors:
        assert e.split(":")[0].split(" ")[0] or "the document" in e


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_random_text_never_raises(text: str) -> None:
    doc, errors = parse(text)
    if errors:
        assert "invalid YAML" in errors[0]
    else:
        validate(doc)


def test_reference_doc_is_generated_from_the_schema() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "config-reference.md"
    assert doc.read_text() == render(), "run: python -m maculaos.config.docs > " + str(doc)


def test_a_dotted_key_under_a_section_is_an_error_not_a_crash() -> None:
    """Found by hypothesis: {'maculaos': {'.': None}} raised IndexError."""
    for doc in ({"maculaos": {".": None}}, {"maculaos": {"a.b.c.d": 1}}, {"maculaos": {"": 1}}):
        _, errors = validate(doc)
        assert errors and "is not a known key" in errors[0], (doc, errors)
