"""`maculaos config apply`: validate everything first, then run every applicator; remember the
last good config and the last error where `status`, the journal and the login banner show it."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from maculaos.config import fastpath, layers, paths
from maculaos.config.applicators import APPLICATORS, CHECKS, ApplyError, Target, write_file
from maculaos.config.fastpath import VOLATILE
from maculaos.config.redact import redact, redact_text
from maculaos.config.schema import BY_PATH
from maculaos.config.validate import read

BANNERS = (Path("/run/motd.d/50-maculaos-config"), Path("/run/issue.d/50-maculaos-config.issue"))


@dataclasses.dataclass
class Paths:
    node_config: Path = paths.NODE_CONFIG
    image_defaults: Path = paths.IMAGE_DEFAULTS
    cmdline: Path | None = paths.CMDLINE
    state: Path = paths.STATE
    banners: tuple[Path, ...] = BANNERS

    @property
    def last_good(self) -> Path:
        return self.state / "config.last-good.yaml"

    @property
    def status_file(self) -> Path:
        return self.state / "config-status.json"

    @property
    def timeout_file(self) -> Path:  # written by boot.sh when it stopped an apply
        return self.state / "config-timeout"


@dataclasses.dataclass
class Result:
    changes: list[str]
    errors: list[str]
    used: str  # which node config took effect: the file, last-good, or defaults
    # keys set by the node (file, last good, kernel command line) that this release validates
    # but does not act on yet: said out loud rather than silently ignored
    not_acted_on: list[str] = dataclasses.field(default_factory=list)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def read_status(p: Paths) -> dict[str, Any]:
    try:
        data = json.loads(p.status_file.read_text())
        status = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        status = {}
    with contextlib.suppress(OSError, ValueError):  # the last boot's apply was stopped
        stopped = p.timeout_file.read_text().strip()
        status["errors"] = [*(status.get("errors") or []), stopped]
    return status


def _banner(p: Paths, errors: list[str], invalid: bool) -> None:
    headline = (
        "/var/lib/maculaos/config.yaml is invalid; running on the last good config"
        if invalid
        else "/var/lib/maculaos/config.yaml did not apply in full (not promoted to last good)"
    )
    for path in p.banners:
        if errors:
            text = (
                f"\n*** MaculaOS: {headline} ***\n"
                + "".join(f"  - {e}\n" for e in errors[:10])
                + "  fix the file, then run: sudo maculaos config apply\n\n"
            )
            with contextlib.suppress(OSError):  # /run may be read-only in tests
                write_file(path, text)
        elif path.exists():
            path.unlink()


def system_problems(values: dict[str, Any], target: Target) -> list[str]:
    """What the checks that need the system (time zones, locales, users, ...) reject."""
    problems = []
    for check in CHECKS:
        try:
            check(values, target)
        except ApplyError as e:
            problems.append(str(e))
        except OSError as e:
            problems.append(f"{check.__name__}: {e}")
    return problems


def apply(p: Paths, target: Target, boot: bool = False) -> Result:
    """Apply the effective config; run_cmd runs at boot and after an apply that changed
    something. Only a config that applied without any error becomes the last good one."""
    # one address for the whole apply: the hostname and the fast-path record agree on it
    target = dataclasses.replace(target, known_mac=fastpath.observe(p.state, target.sysfs_net))

    def system_check(values: dict[str, Any]) -> list[str]:
        return system_problems(values, target)

    eff = layers.load(p.node_config, p.image_defaults, p.cmdline, p.last_good, system_check)
    used = eff.node if p.node_config.exists() else "defaults"
    changes: list[str] = []
    errors = list(eff.errors)
    for name, fn in APPLICATORS:
        try:
            changes += fn(eff.values, target)
        except ApplyError as e:
            errors.append(str(e))
        except OSError as e:
            errors.append(f"{name}: {e}")
    if (boot or changes) and target.live:
        for cmd in eff.values["run_cmd"]:
            r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=False)
            if r.returncode != 0:
                errors.append(f"run_cmd: {cmd!r} exited {r.returncode}: {r.stderr.strip()[:200]}")
            else:
                changes.append(f"run_cmd: {cmd}")
    volatile = any(str(w.get("path", "")).startswith(VOLATILE) for w in eff.values["write_files"])
    changes, errors = [redact_text(c) for c in changes], [redact_text(e) for e in errors]
    status = read_status(p)
    status.update(
        {
            "last_run": _now(),
            "used": used,
            "last_changes": changes,
            "errors": errors,
            "run_cmd": redact("run_cmd", eff.values["run_cmd"]),
            "volatile_writes": volatile,
        }
    )
    # last good: a file that applied without any error (schema, system checks, applicators,
    # run_cmd); one that failed half-way is not (docs/decisions/0004-node-config.md)
    node_bytes = read(p.node_config)[0] if not errors else None
    if node_bytes is not None:
        write_file(p.last_good, node_bytes, 0o600)  # atomic, 0600 from its creation on
        status["last_good"] = {"at": _now(), "sha256": hashlib.sha256(node_bytes).hexdigest()}
    if errors:
        status["last_error"] = {"at": _now(), "errors": errors}
    else:
        status["last_applied"] = _now()
    if target.live or p.state.exists():
        p.state.mkdir(parents=True, exist_ok=True)
        # the next boot may skip the apply only after a clean one with nothing to redo
        status["fingerprint"] = fastpath.record(
            p.state,
            not errors and not volatile and not eff.values["run_cmd"],
            p.node_config,
            p.image_defaults,
            p.cmdline,
            target.known_mac,
        )
        write_file(p.status_file, json.dumps(status, indent=2) + "\n", 0o600)
        p.timeout_file.unlink(missing_ok=True)  # this apply finished
    _banner(p, errors, invalid=bool(eff.errors))
    pending = sorted(
        path
        for path, source in eff.sources.items()
        if source not in ("default", "image") and not BY_PATH[path].acted_on
    )
    return Result(changes, errors, used, pending)
