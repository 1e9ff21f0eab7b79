"""Issue 9 item 15: what ships is separate from what builds. ``src/maculaos`` is the node
package (the base role copies it whole into the image); host-only code (the build, bundles,
the VM harness) lives in ``src/maculaos_build``, test doubles in ``tests/support``. Node code
may import the standard library, PyYAML (Debian's python3-yaml on the node) and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
NODE = REPO / "src" / "maculaos"
ALLOWED = {"maculaos", "yaml"} | set(sys.stdlib_module_names)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_item15_node_code_imports_no_host_code() -> None:
    bad = {
        str(p.relative_to(REPO)): sorted(_imports(p) - ALLOWED)
        for p in sorted(NODE.rglob("*.py"))
        if _imports(p) - ALLOWED
    }
    assert bad == {}, "node code imports host-only or third-party modules"


def test_item15_the_node_package_has_no_build_code() -> None:
    assert not list((NODE / "build").rglob("*.py"))  # (a checkout may keep a __pycache__)
    assert (REPO / "src" / "maculaos_build" / "__main__.py").exists()


def test_item15_the_image_ships_the_node_package_whole() -> None:
    """The base role packs src/maculaos as it is: no exclude is needed to keep host code out."""
    tasks = yaml.safe_load((REPO / "ansible/roles/base/tasks/identity.yml").read_text())
    pack = next(t for t in tasks if t["name"].startswith("Pack the maculaos Python package"))
    argv = pack["ansible.builtin.command"]["argv"]
    assert argv[argv.index("-C") + 1].endswith("/src/maculaos")
    assert [a for a in argv if str(a).startswith("--exclude")] == ["--exclude=__pycache__"]


def test_item15_the_boundary_check_sees_a_violation(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import maculaos_build.vm\nfrom tests.support import grubemu\nimport os\n")
    assert _imports(probe) - ALLOWED == {"maculaos_build", "tests"}
