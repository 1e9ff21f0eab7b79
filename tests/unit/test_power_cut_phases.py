"""The reliability run's phase table: which apply phase each cut hit, and whether the node
stayed on its slot or booted the new one."""

from __future__ import annotations

from tests.reliability.power_cut import by_phase, phase


def test_phase_from_the_last_apply_line() -> None:
    assert phase("50.6%    156.0 MiB    30.8 MiB/s") == "download"
    assert phase("found 0.2.0 (stable) at http://10.0.2.2:1/v2/x.raucb") == "download"
    assert phase("10% Verifying signature") == "signature check"
    assert phase("94% Copying image to rootfs.1") == "slot write"
    assert phase("installing 0.2.0 into slot A (slot B keeps 0.2.0)") == "slot write"
    assert phase("99% Updating slots done.") == "slot written, switching"
    assert phase("apply-under-test.service: Consumed 22.3s CPU time") == "after apply"
    assert phase("Started apply-under-test.service - [systemd-run] …") == "started"
    assert phase("something new") == "other"


def test_stayed_or_switched_is_judged_per_node_from_its_previous_slot() -> None:
    cuts = [
        {"vm": 0, "good": True, "booted": "A", "apply_progress_at_cut": "48% Copying image"},
        {"vm": 1, "good": True, "booted": "B", "apply_progress_at_cut": "x: Consumed 1s"},
        {"vm": 0, "good": True, "booted": "B", "apply_progress_at_cut": "x: Consumed 1s"},
        {"vm": 1, "good": True, "booted": "B", "apply_progress_at_cut": "40.9% 1 MiB 2 MiB/s"},
        {"vm": 1, "good": False, "error": "never came back", "apply_progress_at_cut": ""},
    ]
    assert by_phase(cuts) == {
        "slot write": {"cuts": 1, "good": 1, "stayed": 1, "switched": 0},
        "after apply": {"cuts": 2, "good": 2, "stayed": 0, "switched": 2},
        "download": {"cuts": 1, "good": 1, "stayed": 1, "switched": 0},
        "other": {"cuts": 1, "good": 0, "stayed": 0, "switched": 0},
    }
