"""One implementation per behaviour. Each applicator writes files under ``root`` and, when
``live`` is set, makes the running system follow (hostname, modules, sysctl, ...). Each
returns the list of changes it made, empty when everything already matched (idempotent)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import grp
import os
import pwd
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maculaos import identity


@dataclasses.dataclass
class Target:
    root: Path = Path("/")
    live: bool = True
    arch: str = "amd64"
    sysfs_net: Path = Path("/sys/class/net")
    # the primary interface's address this apply goes by (fastpath.observe: the live one, else
    # the last one seen, so the hostname keeps its suffix when a boot applies before the
    # interface's driver has loaded); None: read it live
    known_mac: str | None = None

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(cmd), capture_output=True, text=True, check=False, env=dict(os.environ, LC_ALL="C")
        )


def write_file(path: Path, content: str | bytes, mode: int = 0o644) -> bool:
    """Atomically write ``content``; True when the file changed (content or mode). The file has
    its final mode from its creation on (a secret is never briefly readable by others) and is on
    disk before it replaces the old one."""
    data = content.encode() if isinstance(content, str) else content
    try:
        if path.read_bytes() == data and (path.stat().st_mode & 0o7777) == mode:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.maculaos-tmp")
    tmp.unlink(missing_ok=True)  # left by a power cut
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, mode & 0o777)
    try:
        os.fchmod(fd, mode)  # exactly this mode, whatever the umask
        with os.fdopen(os.dup(fd), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return True


def _symlink(path: Path, target: str) -> bool:
    if path.is_symlink() and os.readlink(path) == target:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.maculaos-tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, path)
    return True


MANAGED = "# Managed by MaculaOS (maculaos config apply); edit /var/lib/maculaos/config.yaml\n"


def apply_hostname(cfg: dict[str, Any], t: Target) -> list[str]:
    mac = t.known_mac or identity.primary_mac(t.sysfs_net)
    name = identity.expand_hostname(cfg["maculaos.hostname"], mac)
    if identity.apply_hostname(name, etc=t.path("/etc"), live=t.live):
        return [f"hostname: {name}"]
    return []


def apply_dns(cfg: dict[str, Any], t: Target) -> list[str]:
    servers: list[str] = cfg["maculaos.dns_nameservers"]
    path = t.path("/etc/systemd/resolved.conf.d/50-maculaos.conf")
    if not servers:
        if path.exists():
            path.unlink()
            _restart(t, "systemd-resolved")
            return ["dns: back to DHCP-provided servers"]
        return []
    if write_file(path, MANAGED + "[Resolve]\nDNS=" + " ".join(servers) + "\n"):
        _restart(t, "systemd-resolved")
        return [f"dns: {' '.join(servers)}"]
    return []


def apply_labels(cfg: dict[str, Any], t: Target) -> list[str]:
    labels = {k: str(v).replace("${ARCH}", t.arch) for k, v in cfg["maculaos.labels"].items()}
    body = (
        MANAGED + "node-label:\n" + "".join(f'  - "{k}={v}"\n' for k, v in sorted(labels.items()))
    )
    # k3s merges /etc/rancher/k3s/config.yaml.d/*.yaml into its configuration
    if write_file(t.path("/etc/rancher/k3s/config.yaml.d/50-maculaos-labels.yaml"), body):
        return [f"labels: {', '.join(f'{k}={v}' for k, v in sorted(labels.items()))}"]
    return []


def apply_modules(cfg: dict[str, Any], t: Target) -> list[str]:
    mods: list[str] = cfg["maculaos.modules"]
    changes = []
    if write_file(
        t.path("/etc/modules-load.d/50-maculaos-config.conf"),
        MANAGED + "".join(m + "\n" for m in mods),
    ):
        changes.append(f"modules: {' '.join(mods)}")
    if t.live:
        for m in mods:
            if not Path(f"/sys/module/{m}").exists():
                r = t.run("modprobe", m)
                if r.returncode != 0:
                    raise ApplyError(f"maculaos.modules: modprobe {m} failed: {r.stderr.strip()}")
    return changes


def apply_sysctl(cfg: dict[str, Any], t: Target) -> list[str]:
    params: dict[str, Any] = cfg["sysctl"]
    path = t.path("/etc/sysctl.d/90-maculaos.conf")
    body = MANAGED + "".join(f"{k} = {v}\n" for k, v in sorted(params.items()))
    if not params and not path.exists():
        return []
    if write_file(path, body):
        if t.live:
            r = t.run("sysctl", "-p", str(path))
            if r.returncode != 0:
                raise ApplyError(f"sysctl: {r.stderr.strip()}")
        return [f"sysctl: {', '.join(f'{k}={v}' for k, v in sorted(params.items()))}"]
    return []


def apply_ssh_keys(cfg: dict[str, Any], t: Target) -> list[str]:
    keys: list[str] = cfg["ssh_authorized_keys"]
    # sshd reads these besides ~/.ssh/authorized_keys (AuthorizedKeysFile in the base role)
    path = t.path("/etc/ssh/authorized_keys.d/macula")
    if write_file(path, MANAGED + "".join(k + "\n" for k in keys), 0o644):
        return [f"ssh_authorized_keys: {len(keys)} key(s) for macula"]
    return []


def _owner(spec: str) -> tuple[int, int]:
    user, group = spec.split(":")
    uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
    gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    return uid, gid


def apply_write_files(cfg: dict[str, Any], t: Target) -> list[str]:
    changes = []
    for item in cfg["write_files"]:
        content = item.get("content", "")
        data: str | bytes = base64.b64decode(content) if item.get("encoding") == "b64" else content
        path = t.path(item["path"])
        mode = int(item.get("permissions", "0644"), 8)
        changed = write_file(path, data, mode)
        owner = item.get("owner", "root:root")
        try:
            uid, gid = _owner(owner)
        except KeyError:
            raise ApplyError(
                f"write_files: owner {owner} of {item['path']} does not exist"
            ) from None
        st = path.stat()
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid)
            changed = True
        if changed:
            changes.append(f"write_files: {item['path']}")
    return changes


def apply_keyboard(cfg: dict[str, Any], t: Target) -> list[str]:
    layout: str = cfg["maculaos.keyboard"]
    a = write_file(t.path("/etc/vconsole.conf"), MANAGED + f"KEYMAP={layout}\n")
    b = write_file(
        t.path("/etc/default/keyboard"),
        MANAGED + f'XKBMODEL="pc105"\nXKBLAYOUT="{layout}"\nXKBVARIANT=""\nXKBOPTIONS=""\n',
    )
    return [f"keyboard: {layout}"] if a or b else []


def check_keyboard(cfg: dict[str, Any], t: Target) -> None:
    layout: str = cfg["maculaos.keyboard"]
    keymaps = t.path("/usr/share/keymaps")
    if keymaps.is_dir() and not any(keymaps.rglob(f"{layout}.kmap.gz")):
        raise ApplyError(
            f"maculaos.keyboard: no console keymap {layout!r} in this image (/usr/share/keymaps)"
        )


def check_timezone(cfg: dict[str, Any], t: Target) -> None:
    tz: str = cfg["maculaos.timezone"]
    if not t.path(f"/usr/share/zoneinfo/{tz}").is_file():
        raise ApplyError(
            f"maculaos.timezone: {tz} is not in the time zone database (/usr/share/zoneinfo)"
        )


def apply_timezone(cfg: dict[str, Any], t: Target) -> list[str]:
    tz: str = cfg["maculaos.timezone"]
    a = _symlink(t.path("/etc/localtime"), f"../usr/share/zoneinfo/{tz}")
    b = write_file(t.path("/etc/timezone"), tz + "\n")
    if a or b:
        _restart(t, "systemd-timedated")  # it caches the zone it read at start
        return [f"timezone: {tz}"]
    return []


def available_locales(t: Target) -> set[str]:
    names = {"C", "C.UTF-8", "C.utf8", "POSIX"}
    if t.live:
        r = t.run("locale", "-a")
        names |= set(r.stdout.split())
    gen = t.path("/etc/locale.gen")
    if gen.exists():
        names |= {
            line.split()[0]
            for line in gen.read_text().splitlines()
            if line.strip() and not line.startswith("#")
        }
    return names


def _norm(locale: str) -> str:
    return locale.replace(".UTF-8", ".utf8")


def check_locale(cfg: dict[str, Any], t: Target) -> None:
    loc: str = cfg["maculaos.locale"]
    avail = available_locales(t)
    if _norm(loc) not in {_norm(a) for a in avail}:
        shown = ", ".join(sorted(a for a in avail if "." in a)[:12])
        raise ApplyError(f"maculaos.locale: {loc} is not built into this image; available: {shown}")


def check_write_files(cfg: dict[str, Any], t: Target) -> None:
    for item in cfg["write_files"]:
        try:
            _owner(item.get("owner", "root:root"))
        except KeyError:
            raise ApplyError(
                f"write_files: owner {item.get('owner')} of {item['path']} does not exist"
            ) from None
        if item.get("encoding") == "b64":
            try:
                base64.b64decode(item.get("content", ""), validate=True)
            except ValueError:
                raise ApplyError(
                    f"write_files: content of {item['path']} is not valid base64"
                ) from None


def _module_names(moddir: Path) -> set[str]:
    """Modules (and aliases) the kernel in ``moddir`` (/lib/modules/<release>) can load."""
    names = set()
    for index in ("modules.dep", "modules.builtin"):
        with contextlib.suppress(OSError):
            for line in (moddir / index).read_text(errors="replace").splitlines():
                module = line.split(":", 1)[0].rsplit("/", 1)[-1]
                names.add(module.split(".ko", 1)[0])
    with contextlib.suppress(OSError):
        for line in (moddir / "modules.alias").read_text(errors="replace").splitlines():
            if line.startswith("alias ") and len(line.split()) >= 3:
                names.add(line.split()[1])
    return {n.replace("-", "_") for n in names}


def _module_loaded(name: str) -> bool:
    return Path(f"/sys/module/{name.replace('-', '_')}").exists()


def check_modules(cfg: dict[str, Any], t: Target) -> None:
    """Each module is loaded already or known to this kernel's module index (nothing to check
    against when the root has no /lib/modules for the running kernel, e.g. an image build)."""
    release = os.uname().release
    moddir = t.path(f"/lib/modules/{release}")
    if not (moddir / "modules.dep").is_file():
        return
    known = _module_names(moddir)
    for m in cfg["maculaos.modules"]:
        loaded = t.live and _module_loaded(m)
        if not loaded and m.replace("-", "_") not in known:
            raise ApplyError(
                f"maculaos.modules: {m!r} is not a kernel module of this kernel ({moddir})"
            )


def check_sysctl(cfg: dict[str, Any], t: Target) -> None:
    """Each key is a file under /proc/sys of the running kernel. Some appear only once their
    module is loaded (net.bridge.* with br_netfilter): while a configured module is not
    loaded yet, unknown keys are left to `sysctl -p`, whose error names them too."""
    proc = Path("/proc/sys")
    if not t.live or not proc.is_dir():
        return
    if not all(_module_loaded(m) for m in cfg["maculaos.modules"]):
        return
    for key in cfg["sysctl"]:
        name = str(key) if "/" in str(key) else str(key).replace(".", "/")
        if not (proc / name).exists():
            raise ApplyError(
                f"sysctl: {key!r} is not a kernel parameter of this kernel (no /proc/sys/{name})"
            )


def apply_locale(cfg: dict[str, Any], t: Target) -> list[str]:
    loc: str = cfg["maculaos.locale"]
    a = write_file(t.path("/etc/locale.conf"), f"LANG={loc}\n")
    b = write_file(t.path("/etc/default/locale"), f"LANG={loc}\n")
    if a or b:
        _restart(t, "systemd-localed")
        return [f"locale: {loc}"]
    return []


def _restart(t: Target, unit: str) -> None:
    if t.live:
        t.run("systemctl", "try-restart", unit)


class ApplyError(RuntimeError):
    """An applicator could not do its job; the message names the key."""


Applicator = Callable[[dict[str, Any], Target], list[str]]
Check = Callable[[dict[str, Any], Target], None]

# Checks that need the system (time zone database, built locales, users) run for the whole
# config before any applicator: a config that fails one is invalid as a whole.
CHECKS: tuple[Check, ...] = (
    check_keyboard,
    check_timezone,
    check_locale,
    check_write_files,
    check_modules,
    check_sysctl,
)

APPLICATORS: tuple[tuple[str, Applicator], ...] = (
    ("hostname", apply_hostname),
    ("dns", apply_dns),
    ("labels", apply_labels),
    ("modules", apply_modules),
    ("sysctl", apply_sysctl),
    ("ssh_keys", apply_ssh_keys),
    ("write_files", apply_write_files),
    ("keyboard", apply_keyboard),
    ("timezone", apply_timezone),
    ("locale", apply_locale),
)
