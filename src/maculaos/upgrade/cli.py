"""``maculaos upgrade``: check, apply, roll back, status (plan §4.8)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from maculaos import bootdisk, layout
from maculaos.disk import file_digest
from maculaos.log import MaculaError, die
from maculaos.upgrade import bootenv, health, sources, state

SYSTEM_CONF = Path("/etc/rauc/system.conf")
KEYRING = Path("/etc/rauc/keyring.pem")
DOWNLOADS = state.STATE_DIR / "downloads"
# the sha256 of the images of the streamed bundle --apply checked; RAUC's pre-install
# handler (/usr/lib/maculaos/rauc-pre-install) refuses any other before a slot is written
EXPECT = Path("/run/maculaos/upgrade-expect")
RAUC_INFO_TIMEOUT = 600  # s: a stalled server ends in the whole bundle, not a hung timer
_MACHINE = {"x86_64": "amd64", "aarch64": "arm64"}


def _config() -> dict[str, Any]:
    from maculaos.config import layers, paths  # noqa: PLC0415

    for path in (paths.NODE_CONFIG, paths.LAST_GOOD):
        if path.exists() and not os.access(path, os.R_OK):
            # never fall back to the default source (or channel) without saying so
            die(
                f"cannot read {path}: the node's update settings are readable by root only",
                "run it with sudo, or name the source and channel: --from URL --channel stable",
            )
    return layers.load().values


def _settings(args: argparse.Namespace) -> tuple[str, str]:
    """Source and channel: the command line's, else the node config's."""
    if args.source and args.channel:
        return args.source, args.channel
    cfg = _config()
    return (
        args.source or cfg["maculaos.upgrade.url"],
        args.channel or cfg["maculaos.upgrade.channel"],
    )


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        die(f"maculaos upgrade {what} needs root", f"sudo maculaos upgrade {what}")


def _arch() -> str:
    return _MACHINE.get(platform.machine(), platform.machine())


def _compatible() -> str:
    try:
        m = re.search(r"^compatible\s*=\s*(.+)$", SYSTEM_CONF.read_text(), re.M)
    except OSError:
        m = None
    return m.group(1).strip() if m else layout.compatible(_arch())


def _booted() -> str:
    name = bootenv.booted_slot()
    if name is None:
        die("this system was not booted from a MaculaOS slot (no rauc.slot= on the command line)")
    return name


def rauc_info(bundle: Path | str) -> dict[str, Any]:
    """Signature (against the image's keyring) and manifest of a bundle: a file (RAUC checks
    the signature over the whole plain bundle before it reports anything) or the URL of a
    verity bundle (RAUC streams its signed manifest; dm-verity checks the rest as it is read)."""
    name = bundle.name if isinstance(bundle, Path) else bundle
    try:
        r = subprocess.run(
            ["rauc", "info", f"--keyring={KEYRING}", "--output-format=json", str(bundle)],
            capture_output=True,
            text=True,
            check=False,
            timeout=RAUC_INFO_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        die(f"{name}: rauc info did not answer within {RAUC_INFO_TIMEOUT} s; nothing installed")
    if r.returncode != 0:
        msg = " ".join(line.strip() for line in r.stderr.splitlines() if line.strip())
        die(
            f"{name} was refused: {msg[-600:] or 'rauc info failed'}; nothing was installed",
            "bundles must be signed by a key in /etc/rauc/keyring.pem and not modified",
        )
    try:
        info = json.loads(r.stdout)
    except ValueError:
        die(f"rauc info {name}: unreadable output")
    return info if isinstance(info, dict) else {}


def _check_manifest(info: dict[str, Any], name: str, release: sources.Release) -> None:
    update = info.get("update", info)
    compatible, version = update.get("compatible"), update.get("version")
    if compatible != _compatible():
        die(f"{name} is for {compatible!r}, this node is {_compatible()!r}; nothing installed")
    if version != release.version:
        die(f"{name} says version {version}, the source said {release.version}; refused")


def cmd_check(args: argparse.Namespace) -> int:
    source, channel = _settings(args)
    current = state.os_release_version() or "0"
    releases = sources.list_releases(source)
    report = {}
    for channel in sources.CHANNELS:
        mine = sources.candidates(releases, channel, _arch())
        best = mine[-1].version if mine else None
        newer = best is not None and sources.version_key(best) > sources.version_key(current)
        report[channel] = {"version": best, "newer": newer}
    if args.json:
        print(json.dumps({"running": current, "source": source, "channels": report}, indent=2))
        return 0
    print(f"running {current}; source {source}; channel {channel}")
    for channel, r in report.items():
        if r["version"] is None:
            print(f"  {channel:8} none")
        else:
            note = "available" if r["newer"] else "not newer"
            print(f"  {channel:8} {r['version']} ({note})")
    return 0


def install_refusal(
    env: bootenv.BootEnv, booted: str, data: dict[str, Any], boot_id: str,
    ignore_health: bool = False,
) -> str | None:  # fmt: skip
    """Why installing now could overwrite the only known-good system, or None when it is safe:
    the running slot must be the primary and confirmed good, and this boot judged (healthy,
    unless the other slot holds nothing confirmed or ``ignore_health``) by the health gate."""
    other = env.other(booted)
    slot = env.slots[booted]
    if env.primary != booted:
        return (
            f"slot {other} is set to boot next (a rollback or an install is pending) and an "
            f"install would overwrite it. Reboot into it first, or cancel it with "
            f"`maculaos upgrade --rollback` from slot {other}"
        )
    if not env.established(booted):
        return (
            f"slot {booted} (running) is {slot.state}: the health gate has not confirmed it, "
            f"so slot {other} may hold the only known-good system and an install would "
            f"overwrite it. Allowed once `maculaos upgrade status` shows slot {booted} good "
            "(the health gate decides at boot, within maculaos.upgrade.health_timeout)"
        )
    h = data.get("last_health") or {}
    if not isinstance(h, dict) or h.get("boot_id") != boot_id or h.get("slot") != booted:
        return (
            "the health gate has not judged this boot yet. Allowed once it has "
            "(systemctl status maculaos-health; maculaos upgrade status shows the verdict)"
        )
    if not h.get("healthy") and env.established(other) and not ignore_health:
        return (
            f"this boot is unhealthy ({h.get('reason')}) and slot {other} holds a confirmed "
            "system. Allowed after a healthy boot (fix the cause and reboot), or now with "
            "--ignore-health; or go back with maculaos upgrade --rollback"
        )
    return None


def disk_refusal() -> str | None:
    """Why the slots and the ESP named by label may not be this node's own (a second
    MaculaOS disk is attached and the initramfs could not tell), or None."""
    try:
        for part in (layout.ESP, layout.SLOT_A, layout.SLOT_B):
            bootdisk.partition(part.name)
    except bootdisk.NotOwnDisk as e:
        return str(e)
    return None


def _own_disk() -> None:
    refusal = disk_refusal()
    if refusal:
        die(f"not installing: {refusal}; nothing changed")


def _refuse_unsafe(booted: str, data: dict[str, Any], args: argparse.Namespace) -> None:
    _own_disk()
    refusal = install_refusal(bootenv.read(), booted, data, state.boot_id(), args.ignore_health)
    if refusal:
        die(f"not installing now: {refusal}; nothing changed")


def choose_release(
    args: argparse.Namespace, releases: list[sources.Release], channel: str, current: str,
    data: dict[str, Any],
) -> sources.Release | None:  # fmt: skip
    """The newest release to install; releases that were rolled back on this node are skipped
    (said out loud) unless --retry-failed."""
    mine = sources.candidates(releases, channel, _arch())
    if not args.allow_downgrade:
        mine = [r for r in mine if sources.version_key(r.version) > sources.version_key(current)]
    for release in reversed(mine):
        digest = release.sha256
        if digest is None and "://" not in release.url and Path(release.url).is_file():
            digest = file_digest(release.url)  # a bundle on a stick: its digest is at hand
        # without a digest, the same version counts as the same release (never downloaded
        # again just to be refused)
        failed = state.failed_release(data, release.version, digest)
        if failed is None or args.retry_failed:
            return release
        print(
            f"skipping {release.version}: it was rolled back on this node ({failed['time']}: "
            f"{failed['reason']}); install it anyway with --apply --retry-failed",
            flush=True,
        )
    return None


def verified_bundle(release: sources.Release) -> tuple[Path, str]:
    """Fetch the bundle; check its signature, compatible and version; return it and its
    sha256."""
    bundle = sources.fetch(release, DOWNLOADS)
    try:
        _check_manifest(rauc_info(bundle), bundle.name, release)
    except MaculaError:
        if "://" in release.url:
            bundle.unlink(missing_ok=True)  # never keep (or retry) a refused download
        raise
    return bundle, release.sha256 or file_digest(str(bundle))


def delta_refusal(release: sources.Release, full: bool = False) -> str | None:
    """Why this release is not installed from its casync bundle (None when it is): none
    offered, ``--full``, or a node without casync or without verity bundles allowed."""
    if not release.delta_url:
        return "the source offers no casync bundle"
    if full:
        return "--full"
    if shutil.which("casync") is None:
        return "casync is not installed on this node"
    try:
        conf = SYSTEM_CONF.read_text()
    except OSError as e:
        return f"{SYSTEM_CONF}: {e.strerror}"
    system = re.search(r"^\[system\][^\[]*", conf, re.M)
    m = re.search(r"^bundle-formats\s*=\s*(.+)$", system.group(0) if system else "", re.M)
    words = m.group(1).split() if m else []
    # RAUC: plain names set the list; "+f"/"-f" change the default (all formats)
    if "-verity" in words or (any(w[0] not in "+-" for w in words) and "verity" not in words):
        return f"{SYSTEM_CONF} does not allow verity bundles"
    return None


def image_digests(info: dict[str, Any]) -> list[str] | None:
    """The sha256 of each image in a bundle's manifest (``rauc info --output-format=json``),
    or None when it names none or one is not a sha256."""
    digests = []
    for item in info.get("images") or []:
        for image in item.values() if isinstance(item, dict) else [None]:
            digest = image.get("checksum") if isinstance(image, dict) else None
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                return None
            digests.append(digest)
    return sorted(digests) or None


def delta_manifest(release: sources.Release) -> dict[str, Any] | None:
    """The casync bundle's verified manifest, or None (said why) to take the whole bundle."""
    assert release.delta_url is not None
    try:
        info = rauc_info(release.delta_url)
        _check_manifest(info, release.delta_url, release)
    except MaculaError as e:
        print(f"not using the casync bundle: {e}; taking the whole bundle", flush=True)
        return None
    if image_digests(info) is None:
        print("not using the casync bundle: its manifest names no image sha256", flush=True)
        return None
    return info


def installed_digest(slot: str) -> str | None:
    """The sha256 of the image RAUC recorded writing to ``slot`` (A or B); None when ``rauc
    status`` says nothing readable about it."""
    r = subprocess.run(
        ["rauc", "status", "--detailed", "--output-format=json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        slots = json.loads(r.stdout).get("slots", [])
        for item in slots:
            for desc in item.values():
                if desc.get("bootname") == slot:
                    got = desc["slot_status"]["checksum"]["sha256"]
                    return got if isinstance(got, str) else None
    except (ValueError, AttributeError, TypeError, KeyError):
        return None
    return None


def _undo_slot(target: str) -> str | None:
    """Keep ``target`` from booting: mark it bad (enough on its own), then make the running
    slot primary again. What could not be done, or None."""
    failed = []
    for cmd in (["mark-bad", "other"], ["mark-active", "booted"]):
        r = subprocess.run(["rauc", "status", *cmd], check=False, capture_output=True, text=True)
        if r.returncode != 0:
            failed.append(f"rauc status {' '.join(cmd)}: {(r.stderr or '').strip()[-200:]}")
    return "; ".join(failed) or None


def install_delta(release: sources.Release, info: dict[str, Any], target: str) -> bool:
    """Stream the casync bundle into ``target``: RAUC reads the running slot as the seed and
    fetches only the chunks it lacks. False when RAUC failed (the whole bundle is next).

    The server is asked twice (rauc info, rauc install): RAUC's pre-install handler refuses
    a bundle whose image is not the one checked (EXPECT), before writing, even if this
    command is killed meanwhile; afterwards the image RAUC recorded is compared again."""
    assert release.delta_url is not None
    digests = image_digests(info) or []
    print(
        f"installing from the casync bundle {release.delta_url}: only the chunks this node "
        "lacks are fetched",
        flush=True,
    )
    EXPECT.parent.mkdir(parents=True, exist_ok=True)
    EXPECT.write_text("".join(d + "\n" for d in digests))
    try:
        r = subprocess.run(["rauc", "install", release.delta_url], check=False)
    finally:
        EXPECT.unlink(missing_ok=True)
    if r.returncode != 0:
        print(
            f"the casync install failed (rauc exit {r.returncode}); taking the whole bundle",
            flush=True,
        )
        return False
    got = installed_digest(target)
    if got is not None and got in digests:
        return True
    data = state.load()
    data["installs"][target]["status"] = "failed"
    state.save(data)
    problem = _undo_slot(target)
    what = (
        f"received another image (sha256 {got}) than the one checked ({', '.join(digests)})"
        if got
        else "was written, but rauc status does not say which bundle it holds"
    )
    if problem:
        die(
            f"slot {target} {what}, and it could not be kept from booting: {problem}",
            "run: sudo rauc status mark-bad other && sudo rauc status mark-active booted",
        )
    die(
        f"slot {target} {what}; it is marked bad and will not boot",
        "run the upgrade again (--full takes the whole bundle); if it repeats, check the "
        "update server",
    )


def _install(
    release: sources.Release, info: dict[str, Any] | None, bundle: Path | None, target: str,
    running: tuple[str, str], args: argparse.Namespace,
) -> Path | None:  # fmt: skip
    """Write ``target``: from the casync bundle when ``info`` holds its checked manifest, else
    (or when that fails) from the whole bundle, fetched now if it was not already, and checked
    to be safe to install again after that download."""
    booted, current = running
    if info is not None and install_delta(release, info, target):
        return None
    if bundle is None:
        bundle, digest = verified_bundle(release)
        _refuse_unsafe(booted, state.load(), args)
        data = state.load()
        data["installs"][target].update(sha256=digest, source=release.url)
        state.save(data)
    r = subprocess.run(["rauc", "install", str(bundle)], check=False)
    if r.returncode != 0:
        die(f"rauc install failed (exit {r.returncode}); slot {booted} still boots {current}")
    return bundle


def cmd_apply(args: argparse.Namespace) -> int:
    _need_root("--apply")
    cfg = _config()
    booted = _booted()
    source, channel = _settings(args)
    current = state.os_release_version() or "0"
    data = state.load()
    _refuse_unsafe(booted, data, args)
    releases = sources.list_releases(source)
    release = choose_release(args, releases, channel, current, data)
    if release is None:
        print(f"up to date: {current} is the newest {channel} release at {source} to install")
        return 0
    print(f"found {release.version} ({release.channel}) at {release.url}", flush=True)
    why_not = delta_refusal(release, getattr(args, "full", False))
    info = delta_manifest(release) if why_not is None else None
    if info is None:
        if release.delta_url and why_not:
            print(f"not using the casync bundle ({why_not}): taking the whole bundle", flush=True)
        bundle, digest = verified_bundle(release)
    else:
        bundle, digest = None, release.sha256 or f"image:{(image_digests(info) or ['?'])[0]}"
    # again: the download (or a slow server) may have taken hours; nothing is touched yet
    _refuse_unsafe(booted, state.load(), args)
    env_before = bootenv.read()
    target = env_before.other(booted)
    tries = int(cfg["maculaos.upgrade.max_tries"])
    data = state.load()
    data["installs"][target] = {
        "version": release.version,
        "sha256": digest,
        "installed_at": state.now(),
        "tries": tries,
        "source": release.delta_url if info else release.url,
        "status": "installing",
    }
    state.save(data)
    print(
        f"installing {release.version} into slot {target} (slot {booted} keeps {current})",
        flush=True,
    )
    state.forget_etc_layer(target)
    try:
        bundle = _install(release, info, bundle, target, (booted, current), args)
    except MaculaError:
        data = state.load()
        data["installs"][target]["status"] = "failed"
        state.save(data)
        raise
    data = state.load()
    data["installs"][target]["status"] = "installed"
    state.save(data)
    if bundle is not None and "://" in release.url:
        bundle.unlink(missing_ok=True)
    print(
        f"installed {release.version} into slot {target}. The next boot runs it; it has {tries} "
        f"boot(s) to become healthy, else slot {booted} ({current}) takes over again."
    )
    if args.reboot:
        print("rebooting now", flush=True)
        subprocess.run(["systemctl", "reboot"], check=False)
    else:
        print("reboot to start it: sudo systemctl reboot  (or: maculaos upgrade --apply --reboot)")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    _need_root("--rollback")
    booted = _booted()
    with bootenv.locked():
        return _rollback(args, booted)


def _rollback(args: argparse.Namespace, booted: str) -> int:
    refusal = disk_refusal()
    if refusal:
        die(f"not rolling back: {refusal}; nothing changed")
    env = bootenv.read()
    other = env.other(booted)
    slot = env.slots[other]
    if slot.left is not None or not slot.ok:
        die(
            f"slot {other} holds no known-good system (it is {slot.state}); nothing changed",
            "maculaos upgrade status shows both slots",
        )
    version = state.slot_version(other, booted) or "unknown"
    if bootenv.redundant(bootenv.ENV_DIR) and not state.slot_reads_redundant_env(other):
        die(
            f"slot {other} holds {version}, which predates this node's boot environment (it "
            "would write a block GRUB no longer reads, and could not update or fall back "
            "properly); nothing changed",
            "install a release that knows this boot environment instead (maculaos upgrade "
            "--apply --allow-downgrade --from …)",
        )
    env.set_primary(other, None)
    bootenv.write(env)
    print(f"slot {other} ({version}) boots next; slot {booted} stays as the fallback")
    if args.reboot:
        subprocess.run(["systemctl", "reboot"], check=False)
    else:
        print("reboot to run it: sudo systemctl reboot")
    return 0


def status_data() -> dict[str, Any]:
    booted = bootenv.booted_slot()
    if os.geteuid() != 0 and not os.access(bootenv.ENV_DIR, os.R_OK):
        die(
            "maculaos upgrade status needs root: the boot environment on the ESP is readable "
            "by root only",
            "sudo maculaos upgrade status",
        )
    disk = bootdisk.describe()
    if disk["problem"] and not os.path.isdir(bootenv.ENV_DIR):
        die(f"no boot environment to show: {disk['problem']}")
    env = bootenv.read()
    data = state.load()
    nxt, fallback = env.choose()
    slots = {}
    for name in bootenv.SLOTS:
        slot = env.slots[name]
        install = data["installs"].get(name, {})
        slots[name] = {
            "version": state.slot_version(name, booted) if slot.ok or name == booted else None,
            "state": "good"
            if slot.ok and slot.left is None
            else ("bad" if not slot.ok else "trial"),
            "boots_left": slot.left,
            "primary": name == env.primary,
            "booted": name == booted,
            "installed": install.get("installed_at"),
        }
    return {
        "booted": booted,
        "running": state.os_release_version(),
        "next_boot": nxt,
        "next_boot_is_fallback": fallback,
        "last_good": env.last_good,
        "slots": slots,
        "last_health": data["last_health"],
        "last_rollback": data["last_rollback"],
        "unhealthy_boots": data["attempts"][-5:],
        "failed_releases": data["failed_releases"],
        "boot_environment": {
            "seq": env.seq,
            "problems": env.problems,
            "last_repair": (data.get("bootenv_repairs") or [None])[-1],
            "redundant": bootenv.redundant(bootenv.ENV_DIR),
            "last_esp_update": (data.get("esp_updates") or [None])[-1],
        },
        "install_blocked": _blocked(env, booted, data),
        "boot_disk": bootdisk.describe(),
    }


def _blocked(env: bootenv.BootEnv, booted: str | None, data: dict[str, Any]) -> str | None:
    if not booted:
        return None
    return disk_refusal() or install_refusal(env, booted, data, state.boot_id())


def cmd_status(args: argparse.Namespace) -> int:
    s = status_data()
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"running:    {s['running']} from slot {s['booted']}")
    print(
        f"next boot:  slot {s['next_boot']}" + (" (fallback)" if s["next_boot_is_fallback"] else "")
    )
    for name, slot in s["slots"].items():
        flags = [f for f in ("primary", "booted") if slot[f]]
        left = f", {slot['boots_left']} boot(s) left" if slot["state"] == "trial" else ""
        print(
            f"slot {name}:     {slot['version'] or '-':12} {slot['state']}{left}"
            + (f"  ({', '.join(flags)})" if flags else "")
        )
    print(f"last good:  {'slot ' + s['last_good'] if s['last_good'] else 'none confirmed'}")
    print(f"boot disk:  {s['boot_disk']['disk'] or 'NOT KNOWN (see installing)'}")
    benv = s["boot_environment"]
    if benv["problems"]:
        damage = "; ".join(benv["problems"])
        print(f"boot env:   DAMAGED (repaired after the next good boot): {damage}")
    elif benv["last_repair"]:
        r = benv["last_repair"]
        print(f"boot env:   ok (repaired {r['time']}: {'; '.join(r['problems'])})")
    if s["install_blocked"]:
        print(f"installing: not now: {s['install_blocked']}")
    h = s["last_health"]
    if h:
        verdict = "healthy" if h["healthy"] else "UNHEALTHY"
        print(
            f"health:     {verdict} ({h['version']}, slot {h['slot']}, {h['time']}): {h['reason']}"
        )
    rb = s["last_rollback"]
    if rb:
        print("last rollback:\n  " + state.rollback_text(rb).replace("\n", "\n  ").rstrip())
    if s["failed_releases"]:
        print("rolled back, not installed again by itself (--apply --retry-failed to insist):")
        for f in s["failed_releases"]:
            print(f"  {f.get('version')}  {f.get('time')}  {f.get('reason')}")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    return health.main()


def cmd_auto(args: argparse.Namespace) -> int:
    """The timer's run: an unreachable source is logged, not a failed unit (edge nodes are
    often offline)."""
    cfg = _config()
    try:
        if cfg["maculaos.upgrade.auto_apply"]:
            args.reboot = True
            return cmd_apply(args)
        if cfg["maculaos.upgrade.auto_check"]:
            return cmd_check(args)
    except MaculaError as e:
        print(f"no update installed: {e}", file=sys.stderr)
        return 0
    print("automatic update checks are off (maculaos.upgrade.auto_check: false)")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except bootenv.BootEnvError as e:
        die(f"boot environment: {e}; nothing changed", "maculaos upgrade status shows the slots")


def _run(args: argparse.Namespace) -> int:
    if args.action == "status":
        return cmd_status(args)
    if args.action == "health":
        return cmd_health(args)
    if args.rollback:
        return cmd_rollback(args)
    if args.apply:
        return cmd_apply(args)
    if args.auto:
        return cmd_auto(args)
    return cmd_check(args)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "upgrade",
        help="check for, install and roll back MaculaOS releases (A/B slots)",
        description="Without options: --check. Sources: github://owner/repo, an https:// index, "
        "or a local directory / .raucb file (--from).",
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=("status", "health"),
        help="status: slots, versions, last rollback; health: the boot-time health gate",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="list the newest release per channel")
    mode.add_argument(
        "--apply", action="store_true", help="download, verify, install to the standby slot"
    )
    mode.add_argument(
        "--rollback", action="store_true", help="boot the other (known-good) slot next"
    )
    mode.add_argument("--auto", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--from",
        dest="source",
        metavar="PATH|URL",
        help="update source (default: maculaos.upgrade.url)",
    )
    p.add_argument(
        "--channel", choices=tuple(sources.CHANNELS), help="default: maculaos.upgrade.channel"
    )
    p.add_argument("--reboot", action="store_true", help="reboot when done")
    p.add_argument(
        "--full",
        action="store_true",
        help="with --apply: download the whole bundle even when the source offers a casync one",
    )
    p.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="with --apply: install the source's newest release even if it is not newer",
    )
    p.add_argument(
        "--ignore-health",
        action="store_true",
        help="with --apply: install although this boot was judged unhealthy",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --apply: install a release even though it was rolled back on this node",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
