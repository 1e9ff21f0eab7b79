"""A/B upgrades on a real node: check, apply, reboot into the other slot, roll back by hand,
refuse bad bundles, and fall back by itself from an update that never becomes healthy (a
failing required unit; a kernel panic). Runs in order on one node."""

from __future__ import annotations

import base64
import os
import random
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from maculaos_build import vm as vmlib
from tests.support import grubemu, powercut
from tests.support.release_server import bytes_sent, serve
from tests.vm import upgrade_fixtures
from tests.vm.conftest import ssh_key

pytestmark = pytest.mark.vm
GUEST_HOST = "10.0.2.2"  # the host as QEMU user networking shows it to the guest


@pytest.fixture(scope="module")
def booted_with_releases(
    image: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[vmlib.VM, upgrade_fixtures.Releases]]:
    """The node boots (one emulated CPU) while the host makes the bundles on its other core."""
    vm = vmlib.VM(image=image, key=ssh_key())
    with vmlib.running(vm):
        rel = upgrade_fixtures.make(image.parent, tmp_path_factory.mktemp("releases"))
        vm.wait_ssh()
        settle(vm)
        yield vm, rel


@pytest.fixture(scope="module")
def releases(
    booted_with_releases: tuple[vmlib.VM, upgrade_fixtures.Releases],
) -> upgrade_fixtures.Releases:
    return booted_with_releases[1]


@pytest.fixture(scope="module")
def server(releases: upgrade_fixtures.Releases) -> Iterator[str]:
    with serve(releases.root, "127.0.0.1") as (url, _):
        yield f"http://{GUEST_HOST}:{url.rsplit(':', 1)[1]}"


@pytest.fixture(scope="module")
def unode(booted_with_releases: tuple[vmlib.VM, upgrade_fixtures.Releases]) -> vmlib.VM:
    return booted_with_releases[0]


settle, status = powercut.settle, powercut.status


def upgrade(vm: vmlib.VM, *args: str, check: bool = True) -> tuple[int, str]:
    r = vm.ssh("sudo maculaos upgrade " + " ".join(args) + " 2>&1; echo rc=$?", timeout=900)
    rc = int(r.rsplit("rc=", 1)[1])
    if check and rc != 0:
        raise AssertionError(f"maculaos upgrade {' '.join(args)} failed:\n{r}")
    return rc, r


ENV_DIR = "/efi/EFI/maculaos"


def boot_environment(vm: vmlib.VM) -> str:
    """Every byte of the boot environment (both copies, their sums, GRUB's counter)."""
    return vm.ssh(f"sudo sh -c 'cd {ENV_DIR} && sha256sum env.*/* bootcount'")


def bootenv_py(vm: vmlib.VM, code: str) -> str:
    """Python on the node with the boot environment module (as RAUC's backend runs it)."""
    return vm.ssh(f'sudo python3 -c "from maculaos.upgrade import bootenv as b; {code}"')


def slot_fingerprint(vm: vmlib.VM, label: str) -> str:
    """The first 4 MiB of a slot: RAUC writes a slot from its start, so any write (even one
    cut short) changes them."""
    return vm.ssh(
        f"sudo head -c 4194304 /dev/disk/by-partlabel/{label} | sha256sum", timeout=300
    ).split()[0]


def test_fresh_node_runs_slot_a(unode: vmlib.VM, releases: upgrade_fixtures.Releases) -> None:
    s = status(unode)
    assert s["booted"] == "A" and s["running"] == releases.v1
    assert s["slots"]["A"]["state"] == "good" and s["slots"]["A"]["primary"]
    assert s["slots"]["B"]["state"] == "bad"
    assert s["last_health"]["healthy"], s["last_health"]
    # the ESP is mounted on first use (efi.automount); status() above read it
    for unit in ("efi.automount", "efi.mount"):
        assert unode.ssh("systemctl", "is-active", unit, check=False).strip() == "active", unit


def test_check_lists_v2(unode: vmlib.VM, server: str, releases: upgrade_fixtures.Releases) -> None:
    _, out = upgrade(unode, "--check", "--from", f"{server}/v2")
    assert f"stable   {releases.v2} (available)" in out


@pytest.mark.parametrize(
    ("scenario", "expect"),
    [("tampered", "signature"), ("foreign", "verif")],
)
def test_bad_bundles_are_refused(unode: vmlib.VM, server: str, scenario: str, expect: str) -> None:
    before_env = boot_environment(unode)
    before_b = slot_fingerprint(unode, "rootfs-b")
    rc, out = upgrade(unode, "--apply", "--from", f"{server}/{scenario}", check=False)
    assert rc == 1, out
    assert "was refused" in out and expect in out.lower() and "nothing was installed" in out
    assert boot_environment(unode) == before_env
    assert slot_fingerprint(unode, "rootfs-b") == before_b


def test_item1_apply_refuses_while_the_running_slot_is_on_trial(
    unode: vmlib.VM, server: str
) -> None:
    """Slot A put on trial by hand (as after an update, before the health gate's verdict):
    installing would overwrite B, so --apply refuses and neither B nor the environment move."""
    bootenv_py(unode, "e = b.read(); e.set_primary('A', 2); b.write(e)")
    try:
        before_env = boot_environment(unode)
        before_b = slot_fingerprint(unode, "rootfs-b")
        rc, out = upgrade(unode, "--apply", "--from", f"{server}/v2", check=False)
        assert rc == 1, out
        assert "not installing now: slot A (running) is trial (2 boots left)" in out
        assert "Allowed once" in out
        assert boot_environment(unode) == before_env
        assert slot_fingerprint(unode, "rootfs-b") == before_b
        assert "installing: not now" in unode.ssh("sudo", "maculaos", "upgrade", "status")
    finally:
        bootenv_py(unode, "e = b.read(); e.set_state('A', True); b.write(e)")
    assert status(unode)["slots"]["A"]["state"] == "good"


OLD_GRUB_CFG = Path(__file__).resolve().parents[1] / "fixtures/grub.cfg-before-issue-9.j2"


def test_item5_the_node_gets_the_esp_of_a_previous_release(unode: vmlib.VM) -> None:
    """Make this node's ESP what images before issue 9 had: their GRUB core (built without
    the sha256 modules), their grub.cfg and single grubenv block (the state in force), no
    redundant environment and no modules directory. The next tests update it over the
    normal path (apply v2, boot it, confirm it) and check the new boot logic took over."""
    roles = Path(__file__).resolve().parents[2] / "ansible/roles"
    vars_ = yaml.safe_load((roles / "image/vars/main.yml").read_text())
    old_modules = [m for m in vars_["_image_grub_modules"]
                   if m not in vars_["_image_grub_loadable_modules"]]  # fmt: skip
    unode.ssh(
        "sudo", "grub-mkimage", "--format=x86_64-efi", "--output=/efi/EFI/BOOT/BOOTX64.EFI",
        "--prefix=/EFI/maculaos", *old_modules,
    )  # fmt: skip
    block = "b.render_block(b.read().variables())"
    bootenv_py(unode, f"open('{ENV_DIR}/grubenv', 'wb').write({block})")
    cfg = base64.b64encode(grubemu.render(OLD_GRUB_CFG).encode()).decode()
    unode.ssh(f"echo {cfg} | base64 -d | sudo tee {ENV_DIR}/grub.cfg >/dev/null")
    unode.ssh(
        f"sudo rm -rf {ENV_DIR}/env.1 {ENV_DIR}/env.2 {ENV_DIR}/bootcount {ENV_DIR}/x86_64-efi"
    )
    s = status(unode)
    assert not s["boot_environment"]["redundant"] and s["next_boot"] == "A"


ETC_SEEN: dict[str, str] = {}


def _etc_facts(vm: vmlib.VM) -> dict[str, str]:
    script = (
        "getent passwd alice bob maculasvc | cut -d: -f1 | sort | xargs echo; "
        "sudo grep ^macula: /etc/shadow | cut -d: -f2; cat /etc/issue | tail -n 1; "
        "cat /etc/motd | tail -n 1; cat /etc/machine-id; "
        f"systemctl cat {upgrade_fixtures.V2_UNIT} >/dev/null 2>&1 && echo unit || echo no-unit; "
        "test -e /etc/v2-was-here && echo v2-file || echo no-v2-file"
    )
    keys = ("users", "macula_hash", "issue", "motd", "machine_id", "unit", "v2_file")
    return dict(zip(keys, unode_lines(vm, script), strict=True))


def unode_lines(vm: vmlib.VM, script: str) -> list[str]:
    return vm.ssh(f"sh -c {shlex.quote(script)}").rstrip("\n").split("\n")


def test_a_streamed_bundle_other_than_the_checked_one_is_refused_before_writing(
    unode: vmlib.VM, server: str, releases: upgrade_fixtures.Releases
) -> None:
    """Decision 0014: --apply leaves the checked manifest's hash for RAUC's pre-install
    handler; a bundle with another manifest (here: the expectation names another one, as
    when a server swaps bundles between the check and the install) is refused by the RAUC
    service before any slot is written, whatever became of the command."""
    before_b = slot_fingerprint(unode, "rootfs-b")
    url = f"{server}/v2/casync/macula-os-{releases.v2}-amd64.raucb"
    unode.ssh(
        "sudo sh -c 'mkdir -p /run/maculaos && echo -n "
        + "0" * 64
        + " > /run/maculaos/upgrade-expect'"
    )
    try:
        out = unode.ssh(f"sudo rauc install {url} 2>&1; echo rc=$?", timeout=600)
    finally:
        unode.ssh("sudo rm -f /run/maculaos/upgrade-expect")
    journal = unode.ssh("sudo journalctl -u rauc -n 60 --no-pager -o cat")
    assert "rc=1" in out, out
    assert "maculaos: refused" in out + journal and "nothing was written" in out + journal
    assert slot_fingerprint(unode, "rootfs-b") == before_b
    assert status(unode)["next_boot"] == "A"


def test_item6_the_person_changes_etc_on_v1(unode: vmlib.VM) -> None:
    """Before the upgrade, the person adds a user, changes a password and the motd, and
    touches /etc/issue (a copy-up with the default's content: today that copy hid every
    later release's /etc/issue)."""
    unode.ssh(
        "sudo sh -c 'useradd -m alice && echo macula:Person-Set-1 | chpasswd "
        "&& echo person-motd >> /etc/motd && chmod 0644 /etc/issue'"
    )
    ETC_SEEN.update(_etc_facts(unode))
    assert ETC_SEEN["users"] == "alice" and ETC_SEEN["motd"] == "person-motd"
    assert ETC_SEEN["unit"] == "no-unit"


def test_apply_v2_then_reboot_runs_it_from_slot_b(
    unode: vmlib.VM, server: str, releases: upgrade_fixtures.Releases
) -> None:
    started = time.monotonic()
    with serve(releases.root, "127.0.0.1") as (url, log):
        v2 = f"http://{GUEST_HOST}:{url.rsplit(':', 1)[1]}/v2"
        _, out = upgrade(unode, "--apply", "--from", v2)
        sent = {
            "chunks": bytes_sent(releases.root, log, ".cacnk"),
            "bundles": bytes_sent(releases.root, log, ".raucb"),
        }
    print(f"apply v2 took {time.monotonic() - started:.1f}s; served {sent}")
    assert f"installed {releases.v2} into slot B" in out
    # issue 10 goal 3: the casync bundle was streamed, the node sent for the chunks its
    # slot A lacks (v2 differs by a few files), never for the whole bundle
    assert "only the chunks this node lacks are fetched" in out, out
    whole = releases.root / "v2" / f"macula-os-{releases.v2}-amd64.raucb"
    assert f"/v2/{whole.name}" not in [p for p, _ in log]
    assert 0 < sent["chunks"] + sent["bundles"] <= 0.15 * whole.stat().st_size, sent
    s = status(unode)
    assert s["next_boot"] == "B" and s["slots"]["B"]["state"] == "trial"
    unode.reboot(timeout=600)
    settle(unode)
    s = status(unode)
    assert s["booted"] == "B" and s["running"] == releases.v2
    assert s["slots"]["B"]["state"] == "good", s  # the health gate confirmed it
    assert s["slots"]["A"]["version"] == releases.v1 and s["slots"]["A"]["state"] == "good"


def test_item6_v2_sees_its_new_etc_and_keeps_the_persons(unode: vmlib.VM) -> None:
    """v2 adds a system user, a unit and a changed /etc/issue: all reach the node, whose
    person's user, password and motd stay, and whose identity stays."""
    assert ETC_SEEN, "needs test_item6_the_person_changes_etc_on_v1"
    now = _etc_facts(unode)
    assert now["users"] == f"alice {upgrade_fixtures.V2_USER}", now
    assert now["macula_hash"] == ETC_SEEN["macula_hash"]
    assert now["motd"] == "person-motd" and now["machine_id"] == ETC_SEEN["machine_id"]
    assert now["issue"] == upgrade_fixtures.V2_ISSUE and now["unit"] == "unit"
    log = unode.ssh("sudo cat /run/maculaos/state/overlay/etc.B/merge.log")
    assert "merge passwd" in log and "drop issue" in log and "keep motd" in log, log
    # what the failed release might write, which a rollback must not keep
    unode.ssh("sudo sh -c 'useradd bob && touch /etc/v2-was-here'")


def test_item5_the_confirmed_release_brought_its_boot_logic_to_the_esp(
    unode: vmlib.VM, releases: upgrade_fixtures.Releases
) -> None:
    """v2 was installed and booted under the previous release's GRUB logic; once confirmed,
    the health gate moved the ESP to v2's: modules, the redundant environment made from the
    old block, then grub.cfg; the old block is retired."""
    s = status(unode)
    benv = s["boot_environment"]
    assert benv["redundant"] and benv["problems"] == [], benv
    update = benv["last_esp_update"]
    assert update["version"] == releases.v2 and "EFI/maculaos/grub.cfg" in update["files"]
    listing = unode.ssh("sudo", "ls", ENV_DIR).split()
    assert {"env.1", "env.2", "bootcount", "x86_64-efi", "grubenv.before-layout-2"} <= set(
        listing
    ) and "grubenv" not in listing
    assert s["slots"]["B"]["state"] == "good" and s["next_boot"] == "B"
    SERIAL_MARK["before_rollback"] = len(unode.serial_log.read_bytes())


SERIAL_MARK: dict[str, int] = {}


def test_rollback_returns_to_v1(unode: vmlib.VM, releases: upgrade_fixtures.Releases) -> None:
    _, out = upgrade(unode, "--rollback")
    assert f"slot A ({releases.v1}) boots next" in out
    # item 4 on the real GRUB: garbage over the copy not in force (as a torn SD-card write
    # would leave it); the node boots what the current copy says and repairs the other
    stale = bootenv_py(unode, "n = b.current_copy(b.ENV_DIR)[0]; print(b.COPIES[n == b.COPIES[0]])")
    unode.ssh(f"sudo sh -c 'head -c 1024 /dev/urandom > {ENV_DIR}/{stale.strip()}/bootenv'")
    assert "DAMAGED" in unode.ssh("sudo", "maculaos", "upgrade", "status")
    unode.reboot(timeout=600)
    settle(unode)
    s = status(unode)
    assert s["booted"] == "A" and s["running"] == releases.v1
    assert s["slots"]["B"]["state"] == "good" and s["slots"]["B"]["version"] == releases.v2
    benv = s["boot_environment"]
    assert benv["problems"] == [] and stale.strip() in " ".join(benv["last_repair"]["problems"])
    # item 6: v1 finds its own /etc again: without v2's user and file, with the person's
    if ETC_SEEN:
        assert _etc_facts(unode) == ETC_SEEN
    # item 5: this boot ran the new grub.cfg on the previous release's GRUB core, which
    # loaded the sha256 modules from the ESP and checked the copies (hashsum prints OK)
    if "before_rollback" in SERIAL_MARK:
        console = unode.serial_log.read_bytes()[SERIAL_MARK["before_rollback"] :].decode(
            errors="replace"
        )
        assert "bootenv: OK" in console and "hashsum.mod" not in console, console[-3000:]


def _wait_for_rollback(vm: vmlib.VM, failed_version: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if vm.boot_id():
            settle(vm)
            s = status(vm)
            rb = s.get("last_rollback") or {}
            if rb.get("failed_version") == failed_version:
                return s
        time.sleep(10)
    raise AssertionError(f"no rollback from {failed_version} within {timeout}s")


TRIES_CONFIG = "/var/lib/maculaos/config.yaml"


def test_unhealthy_v3_rolls_back_by_itself(
    unode: vmlib.VM, server: str, releases: upgrade_fixtures.Releases
) -> None:
    """An update whose required unit fails, installed with the node's config saying
    ``maculaos.upgrade.max_tries: 2``: two unhealthy boots (the first one's health gate
    reboots to spend a try, GRUB boots the update once more), then GRUB falls back. The
    panicking update below keeps the default 3."""
    saved = f"{TRIES_CONFIG}.before-test"
    unode.ssh(
        f"sudo sh -c 'umask 077; {{ test ! -e {TRIES_CONFIG} || mv {TRIES_CONFIG} {saved}; }} && "
        f'printf "maculaos:\\n  upgrade: {{max_tries: 2}}\\n" > {TRIES_CONFIG}\''
    )
    try:
        upgrade(unode, "--apply", "--from", f"{server}/v3-unhealthy")
    finally:
        unode.ssh(f"sudo sh -c 'rm {TRIES_CONFIG}; test ! -e {saved} || mv {saved} {TRIES_CONFIG}'")
    boot = unode.boot_id()
    unode.ssh("sudo", "systemctl", "reboot", check=False, timeout=30)
    started = time.monotonic()
    assert boot
    unode.wait_new_boot(boot, timeout=1500)  # SSH is down on every v3 boot: this is A again
    s = _wait_for_rollback(unode, releases.v3_unhealthy, 600)
    print(f"unhealthy v3 -> back on {s['running']} in {time.monotonic() - started:.0f}s")
    rb = s["last_rollback"]
    assert s["booted"] == "A" and s["running"] == releases.v1
    assert rb["tries"] == 2 and rb["unhealthy_boots_seen"] == 2
    assert "ssh.service failed" in rb["reason"]
    assert s["slots"]["B"]["state"] == "bad"
    motd = unode.ssh("cat", "/run/motd.d/60-maculaos-upgrade")
    assert f"{releases.v3_unhealthy} (slot B) did not become healthy in 2 tries" in motd
    issue = unode.ssh("cat", "/run/issue.d/60-maculaos-upgrade.issue")
    assert "rolled back" in issue
    journal = unode.ssh("sudo", "journalctl", "-b", "-u", "maculaos-health", "--no-pager")
    assert "ROLLBACK" in journal and "ssh.service failed" in journal
    text = unode.ssh("sudo", "maculaos", "upgrade", "status")
    assert "last rollback" in text and releases.v3_unhealthy in text


def test_item2_a_rolled_back_release_is_not_installed_again(
    unode: vmlib.VM, server: str, releases: upgrade_fixtures.Releases
) -> None:
    before_b = slot_fingerprint(unode, "rootfs-b")
    _, out = upgrade(unode, "--apply", "--from", f"{server}/v3-unhealthy")
    assert f"skipping {releases.v3_unhealthy}: it was rolled back on this node" in out
    assert "--retry-failed" in out and "installing" not in out
    assert slot_fingerprint(unode, "rootfs-b") == before_b
    s = status(unode)
    assert [f["version"] for f in s["failed_releases"]] == [releases.v3_unhealthy]
    assert "ssh.service failed" in s["failed_releases"][0]["reason"]
    assert s["slots"]["B"]["state"] == "bad"
    text = unode.ssh("sudo", "maculaos", "upgrade", "status")
    assert "rolled back, not installed again by itself" in text


def test_panicking_v3_rolls_back_by_itself(
    unode: vmlib.VM, server: str, releases: upgrade_fixtures.Releases
) -> None:
    upgrade(unode, "--apply", "--from", f"{server}/v3-panic")
    boot = unode.boot_id()
    assert boot
    unode.ssh("sudo", "systemctl", "reboot", check=False, timeout=30)
    started = time.monotonic()
    unode.wait_new_boot(boot, timeout=1200)
    s = _wait_for_rollback(unode, releases.v3_panic, 600)
    print(f"panicking v3 -> back on {s['running']} in {time.monotonic() - started:.0f}s")
    rb = s["last_rollback"]
    assert s["booted"] == "A" and s["running"] == releases.v1
    assert rb["tries"] == 3 and "never reached the health check" in rb["reason"]
    serial = unode.serial_log.read_text(errors="replace")
    assert serial.count("Kernel panic") >= 3


# one cut in the CI tier; the full tier (MACULAOS_FULL=1) two here, and 100 in
# tests/reliability/power_cut.py
@pytest.mark.parametrize("cut", [1, 2] if os.environ.get("MACULAOS_FULL") else [1])
def test_power_cut_during_apply_boots_a_good_slot(
    unode: vmlib.VM, server: str, releases: upgrade_fixtures.Releases, cut: int
) -> None:
    """Kill QEMU at a random moment of ``--apply`` (download, verification or slot write):
    the node always comes back on a good slot (tests/reliability/power_cut.py does 100)."""
    delay = random.Random(cut * 7919).uniform(5, 90)
    result = powercut.cut_once(unode, f"{server}/v2", delay, (releases.v1, releases.v2))
    print(f"power cut {cut}: {result}")
    assert result["good"], result
