"""``maculaos upgrade``: check, apply, roll back, status (plan §4.8)."""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from maculaos.log import MaculaError, die
from maculaos.upgrade import bootenv, health, sources, state

SYSTEM_CONF = Path("/etc/rauc/system.conf")
KEYRING = Path("/etc/rauc/keyring.pem")
DOWNLOADS = state.STATE_DIR / "downloads"
_MACHINE = {"x86_64": "amd64", "aarch64": "arm64"}


def _config() -> dict[str, Any]:
    from maculaos.config import layers  # noqa: PLC0415

    return layers.load().values


def _arch() -> str:
    return _MACHINE.get(platform.machine(), platform.machine())


def _compatible() -> str:
    try:
        m = re.search(r"^compatible\s*=\s*(.+)$", SYSTEM_CONF.read_text(), re.M)
    except OSError:
        m = None
    return m.group(1).strip() if m else f"maculaos-{_arch()}"


def _booted() -> str:
    name = bootenv.booted_slot()
    if name is None:
        die("this system was not booted from a MaculaOS slot (no rauc.slot= on the command line)")
    return name


def rauc_info(bundle: Path) -> dict[str, Any]:
    """Signature (against the image's keyring) and manifest of a bundle; RAUC checks the
    signature over the whole plain bundle before it reports anything."""
    r = subprocess.run(
        ["rauc", "info", f"--keyring={KEYRING}", "--output-format=json", str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        msg = " ".join(line.strip() for line in r.stderr.splitlines() if line.strip())
        die(
            f"{bundle.name} was refused: {msg or 'rauc info failed'}; nothing was installed",
            "bundles must be signed by a key in /etc/rauc/keyring.pem and not modified",
        )
    try:
        info = json.loads(r.stdout)
    except ValueError:
        die(f"rauc info {bundle.name}: unreadable output")
    return info if isinstance(info, dict) else {}


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _config()
    source = args.source or cfg["maculaos.upgrade.url"]
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
    print(
        f"running {current}; source {source}; "
        f"channel {args.channel or cfg['maculaos.upgrade.channel']}"
    )
    for channel, r in report.items():
        if r["version"] is None:
            print(f"  {channel:8} none")
        else:
            note = "available" if r["newer"] else "not newer"
            print(f"  {channel:8} {r['version']} ({note})")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    cfg = _config()
    booted = _booted()
    source = args.source or cfg["maculaos.upgrade.url"]
    channel = args.channel or cfg["maculaos.upgrade.channel"]
    current = state.os_release_version() or "0"
    releases = sources.list_releases(source)
    release = sources.newest(releases, channel, _arch(), current)
    if release is None and args.allow_downgrade:
        mine = sources.candidates(releases, channel, _arch())
        release = mine[-1] if mine else None
    if release is None:
        print(f"up to date: {current} is the newest {channel} release at {source}")
        return 0
    print(f"found {release.version} ({release.channel}) at {release.url}", flush=True)
    bundle = sources.fetch(release, DOWNLOADS)
    try:
        info = rauc_info(bundle)
    except MaculaError:
        if "://" in release.url:
            bundle.unlink(missing_ok=True)  # never keep (or retry) a refused download
        raise
    update = info.get("update", info)
    compatible, version = update.get("compatible"), update.get("version")
    if compatible != _compatible():
        die(
            f"{bundle.name} is for {compatible!r}, this node is {_compatible()!r}; "
            "nothing installed"
        )
    if version != release.version:
        die(f"{bundle.name} says version {version}, the source said {release.version}; refused")
    env_before = bootenv.read()
    target = env_before.other(booted)
    tries = int(cfg["maculaos.upgrade.max_tries"])
    data = state.load()
    data["installs"][target] = {
        "version": release.version,
        "installed_at": state.now(),
        "tries": tries,
        "source": release.url,
        "status": "installing",
    }
    state.save(data)
    print(
        f"installing {release.version} into slot {target} (slot {booted} keeps {current})",
        flush=True,
    )
    r = subprocess.run(["rauc", "install", str(bundle)], check=False)
    if r.returncode != 0:
        data["installs"][target]["status"] = "failed"
        state.save(data)
        die(f"rauc install failed (exit {r.returncode}); slot {booted} still boots {current}")
    data["installs"][target]["status"] = "installed"
    state.save(data)
    if "://" in release.url:
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
    booted = _booted()
    env = bootenv.read()
    other = env.other(booted)
    slot = env.slots[other]
    if slot.left is not None or not slot.ok:
        die(
            f"slot {other} holds no known-good system (it is {slot.state}); nothing changed",
            "maculaos upgrade status shows both slots",
        )
    version = state.slot_version(other, booted) or "unknown"
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
    }


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
    print(f"last good:  slot {s['last_good']}")
    h = s["last_health"]
    if h:
        verdict = "healthy" if h["healthy"] else "UNHEALTHY"
        print(
            f"health:     {verdict} ({h['version']}, slot {h['slot']}, {h['time']}): {h['reason']}"
        )
    rb = s["last_rollback"]
    if rb:
        print("last rollback:\n  " + state.rollback_text(rb).replace("\n", "\n  ").rstrip())
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
        print(f"update check failed: {e}", file=sys.stderr)
        return 0
    print("automatic update checks are off (maculaos.upgrade.auto_check: false)")
    return 0


def run(args: argparse.Namespace) -> int:
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
        "--allow-downgrade",
        action="store_true",
        help="with --apply: install the source's newest release even if it is not newer",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
