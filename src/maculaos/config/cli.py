"""`maculaos config validate|show|apply|status`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from maculaos.config import engine, layers, paths, seed
from maculaos.config.applicators import Target
from maculaos.config.redact import redact, redact_doc
from maculaos.config.schema import KEYS
from maculaos.config.validate import MAX_BYTES, parse, read, validate
from maculaos.log import die


def nest(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in values.items():
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def cmd_validate(args: argparse.Namespace) -> int:
    """The schema, then (unless --schema-only) the checks apply runs against this system, on
    the file merged over the image defaults as apply sees it."""
    name = "<stdin>" if args.file == "-" else args.file
    if args.file == "-":
        data: bytes | None = sys.stdin.buffer.read(MAX_BYTES + 1)
        errors: list[str] = []
    else:
        data, errors = read(Path(args.file))
        if data is None and not errors:
            errors = [f"{name}: no such file"]
    if data is not None:
        doc, errors = parse(data, name)
        if not errors:
            values, problems = validate(doc)
            if not problems and not args.schema_only:
                image = layers.load(Path("/nonexistent"), cmdline=None, last_good=None)
                merged = {**image.values, **values}
                problems = engine.system_problems(merged, Target())
            errors = [f"{name}: {e}" for e in problems]
    for problem in errors:
        print(problem, file=sys.stderr)
    if not errors:
        print(f"{name}: valid" + (" (schema only)" if args.schema_only else ""))
    return 1 if errors else 0


def _readable(command: str, *files: Path) -> None:
    """Say plainly that a read-only command needs root rather than show something else."""
    for f in files:
        try:
            os.close(os.open(f, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY))
        except PermissionError:
            die(f"{command} needs root: cannot read {f}", f"sudo maculaos {command}")
        except OSError:
            pass  # missing or broken: the command reports it itself


def _paths(args: argparse.Namespace) -> engine.Paths:
    return engine.Paths(node_config=Path(args.config), state=Path(args.state))


def cmd_show(args: argparse.Namespace) -> int:
    p = _paths(args)
    _readable("config show", p.node_config, p.last_good)
    eff = layers.load(p.node_config, last_good=p.last_good)
    shown = {p: redact(p, v) for p, v in eff.values.items()}
    if args.json:
        print(
            json.dumps(
                {"config": nest(shown), "sources": eff.sources, "errors": eff.errors},
                indent=2,
                sort_keys=True,
                default=str,
            )
        )
    else:
        print(yaml.safe_dump(nest(shown), sort_keys=True, default_flow_style=False), end="")
        for problem in eff.errors:
            print(f"# error: {problem}", file=sys.stderr)
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:  # it writes /etc and runs modprobe, sysctl, systemctl
        die("config apply needs root", "sudo maculaos config apply")
    paths = _paths(args)
    if args.boot and not paths.status_file.exists():  # first boot only
        try:
            note = seed.seed(paths.node_config)
        except (OSError, subprocess.SubprocessError) as err:
            note = f"no seed config: {err}"
        if note:
            print(note)
    result = engine.apply(paths, Target(), boot=args.boot)
    if args.json:
        print(json.dumps(dataclasses_dict(result), indent=2))
    else:
        for c in result.changes:
            print(f"changed: {c}")
        if not result.changes:
            print("no change")
        for e in result.errors:
            print(f"error: {e}", file=sys.stderr)
        if result.not_acted_on:
            print(
                "note: validated, not acted on by this release yet: "
                + ", ".join(result.not_acted_on)
            )
    # at boot an invalid file must not fail the unit: the node runs on the last good config
    return 0 if args.boot or not result.errors else 1


def dataclasses_dict(result: engine.Result) -> dict[str, Any]:
    return {
        "changed": bool(result.changes),
        "changes": result.changes,
        "errors": result.errors,
        "used": result.used,
        "not_acted_on": result.not_acted_on,
    }


def cmd_status(args: argparse.Namespace) -> int:
    p = _paths(args)
    _readable("config status", p.status_file)
    status = redact_doc(engine.read_status(p))  # a file written before redaction, too
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print(f"config:        {args.config}")
    print(f"in effect:     {status.get('used', 'never applied')}")
    print(f"last applied:  {status.get('last_applied', 'never')}")
    good = status.get("last_good")
    print(f"last good:     {good['at'] + ' sha256 ' + good['sha256'][:12] if good else 'none'}")
    err = status.get("last_error")
    current = status.get("errors") or []
    if current:
        print("current errors (this config is not the last good one until it applies cleanly):")
        for e in current:
            print(f"  - {e}")
    elif err:
        print(f"last error:    {err['at']} (since resolved)")
    return 1 if current else 0


def help_text() -> str:
    return "keys:\n" + "\n".join(f"  {k.path} ({k.type}) {k.description}" for k in KEYS)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "config",
        help="validate, show and apply /var/lib/maculaos/config.yaml",
        epilog=help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default=str(paths.NODE_CONFIG), help=argparse.SUPPRESS)
    p.add_argument("--state", default=str(paths.STATE), help=argparse.SUPPRESS)
    csub = p.add_subparsers(dest="config_command", required=True)
    v = csub.add_parser("validate", help="check a config file (exit 0 valid, 1 invalid)")
    v.add_argument(
        "file",
        nargs="?",
        default=str(paths.NODE_CONFIG),
        help="file to check ('-' for stdin; default: the node's config)",
    )
    v.add_argument(
        "--schema-only",
        action="store_true",
        help="skip the checks against this system (time zones, locales, users, modules, sysctl)"
        ": for a host that is not the node",
    )
    v.set_defaults(func=cmd_validate)
    s = csub.add_parser("show", help="the effective merged config (secrets redacted)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)
    a = csub.add_parser("apply", help="apply the config now (idempotent; prints what changed)")
    a.add_argument("--json", action="store_true")
    a.add_argument("--boot", action="store_true", help="boot mode: never fail the unit")
    a.set_defaults(func=cmd_apply)
    st = csub.add_parser("status", help="last applied, last good, last error")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
