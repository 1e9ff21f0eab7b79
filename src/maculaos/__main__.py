"""The on-device ``maculaos`` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from maculaos import identity
from maculaos.log import MaculaError


def _hostname(args: argparse.Namespace) -> int:
    mac = identity.wait_primary_mac(Path(args.sysfs), timeout=args.wait)
    if mac is None:
        print(
            "maculaos: no physical network interface found; hostname left unchanged",
            file=sys.stderr,
        )
        return 0
    name = identity.hostname_for(mac, args.prefix)
    if args.apply:
        changed = identity.apply_hostname(name)
        print(f"hostname {name} ({'set' if changed else 'unchanged'}, from {mac})")
    else:
        print(name)
    return 0


def parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command tree; for ``argv`` that starts with ``config``, ``upgrade`` or
    ``hostname`` only that branch (each imports its own modules: the upgrade side brings HTTP,
    the config side YAML, and a process at boot -- the config unit, the health gate -- should
    not pay for the other's under an emulated CPU). Any other first word, an option first, or
    no ``argv`` at all gets every branch: help and a wrong command list them all."""
    word = argv[0] if argv else None
    p = argparse.ArgumentParser(prog="maculaos", description="MaculaOS node tool")
    sub = p.add_subparsers(dest="command", required=True)
    h = sub.add_parser(
        "hostname", help="print (or --apply) the node name macula-XXXX from the primary MAC"
    )
    h.add_argument("--apply", action="store_true", help="write /etc/hostname and set it now")
    h.add_argument("--prefix", default="macula", help="hostname prefix (default: macula)")
    h.add_argument(
        "--wait",
        type=float,
        default=10.0,
        help="seconds to wait for a network interface (default: 10)",
    )
    h.add_argument("--sysfs", default="/sys/class/net", help=argparse.SUPPRESS)
    h.set_defaults(func=_hostname)
    if word not in ("hostname", "upgrade"):
        from maculaos.config import cli as config_cli  # noqa: PLC0415 (YAML: not at boot)

        config_cli.add_parser(sub)
    if word not in ("hostname", "config"):
        from maculaos.upgrade import cli as upgrade_cli  # noqa: PLC0415

        upgrade_cli.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Never a traceback: a known error is one line (exit 1), anything else an internal error
    (exit 70, EX_SOFTWARE) with a hint to report it; Ctrl-C exits 130 quietly."""
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = parser(argv).parse_args(argv)
        return int(args.func(args))
    except MaculaError as e:
        print(f"maculaos: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `maculaos config show | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:
        said = " ".join(str(e).split())[:300]
        print(f"maculaos: internal error: {type(e).__name__}: {said}", file=sys.stderr)
        print(
            "  please report it, with the command you ran: "
            "https://github.com/macula-io/macula-os/issues",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
