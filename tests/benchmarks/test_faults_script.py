"""benchmarks/faults.py: each command killed once at a seeded point and re-run
finishes with the uninterrupted run's outputs, byte for byte, and no leftovers;
prepare and the grid on a full disk stop with one error naming the path, keep
what they finished and finish once there is space.

The script's full figures (10 kills per command, and the bad-input tests
counted) are docs/reliability.md's; this is the same harness with one kill each,
on a smaller download.
"""

import benchmark_script
import pytest

COMMANDS = ("prepare", "keras_h5", "grid", "analyze", "pool")


@pytest.mark.slow
def test_killed_commands_resume_and_a_full_disk_is_named():
    rows = benchmark_script.rows(
        "faults.py", "--kills", "1", "--images", "60", "--no-bad_inputs"
    )
    kills = [row for row in rows if row["fault"] == "kill"]
    assert [row["command"] for row in kills] == list(COMMANDS)
    for row in kills:
        assert row["tried"] == row["resumed"] == 1, row
        assert row["leftovers"] == 0, row
        assert 0 < row["kill_points_s"][0] < row["reference_s"]
        assert row["failures"] == [], row
        assert row["identical"] == 1, row
    # A trial that ran faster than its reference can finish before its point.
    assert sum(row["killed"] for row in kills) >= len(COMMANDS) - 1, kills

    full = [row for row in rows if row["fault"] == "disk_full"]
    assert [row["command"] for row in full] == ["prepare", "grid"]
    if "skipped" in full[0]:
        pytest.skip(f"disk full: {full[0]['skipped']} (run the suite as root)")
    for row in full:
        assert (row["clean_errors"], row["finished_intact"], row["resumed"]) == (
            1,
            1,
            1,
        ), row
        assert "No space left on device" in row["error"]
