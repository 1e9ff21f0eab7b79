"""Issue 10, goal 5: the build runs its Ansible play through Mitogen (decision 0013). These tests
keep the pinned ansible-core and Mitogen working together, and the build working without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from maculaos_build import image
from maculaos_build.paths import REPO

PLAY = """\
- hosts: all
  gather_facts: false
  environment: {SOURCE_DATE_EPOCH: "315619200"}
  tasks:
    - ansible.builtin.copy: {content: "made by {{ ansible_play_name | default('a play') }}\\n",
                             dest: "{{ out }}/copied", mode: "0640"}
    - ansible.builtin.command: {cmd: env}
      register: env
      changed_when: false
    - ansible.builtin.copy: {content: "{{ env.stdout }}\\n", dest: "{{ out }}/env", mode: "0600"}
    - ansible.builtin.stat: {path: "{{ out }}/copied"}
      register: st
    - ansible.builtin.assert: {that: [st.stat.mode == "0640"]}
    - ansible.builtin.shell: "tr '\\\\0' ' ' < /proc/$PPID/cmdline > {{ out }}/parent"
      changed_when: true
"""


def test_the_wrapper_finds_mitogens_strategy_in_the_venv() -> None:
    plugins = Path(image.mitogen_strategy_plugins())
    assert (plugins / "mitogen_linear.py").is_file()


def test_another_interpreters_mitogen_is_not_handed_to_the_venvs_ansible(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "prefix", "/usr")
    assert image.mitogen_strategy_plugins() == ""


def test_without_mitogen_the_build_uses_ansibles_own_strategy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ansible_mitogen", None)  # import fails as if absent
    assert image.mitogen_strategy_plugins() == ""


def test_the_pinned_ansible_runs_a_play_through_mitogen(tmp_path: Path) -> None:
    """The way Packer runs the image play: ANSIBLE_STRATEGY=mitogen_linear, play environment
    (SOURCE_DATE_EPOCH reaches the commands), modules writing files with their modes."""
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_STRATEGY_PLUGINS=image.mitogen_strategy_plugins(),
        ANSIBLE_STRATEGY="mitogen_linear",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
    )
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i", "localhost,", "-c", "local", str(play),
            "-e", f"out={tmp_path} ansible_python_interpreter={sys.executable}",
        ],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    # the command's parent is Mitogen's one interpreter, not a per-task AnsiballZ_command.py
    assert "(mitogen:" in (tmp_path / "parent").read_text()
    assert (tmp_path / "copied").read_text() == "made by all\n"
    assert oct((tmp_path / "copied").stat().st_mode & 0o777) == "0o640"
    assert "SOURCE_DATE_EPOCH=315619200" in (tmp_path / "env").read_text().splitlines()
