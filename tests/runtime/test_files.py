"""Atomic writes: a failure leaves neither the target nor the partial file."""

import errno

import numpy as np
import pytest

from jaxtransfer.runtime import files


def test_atomic_file_keeps_suffix_and_renames_on_success(tmp_path):
    target = tmp_path / "predictions.npz"
    with files.atomic_file(target) as partial:
        assert partial.suffix == ".npz" and partial.name.startswith(".")
        np.savez(partial, x=np.arange(3))  # np.savez adds no second suffix
    np.testing.assert_array_equal(np.load(target)["x"], np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.npz"]


def test_failure_leaves_old_content_and_no_partial(tmp_path):
    target = tmp_path / "metrics.json"
    files.write_text(target, "old\n")
    with pytest.raises(RuntimeError), files.atomic_file(target) as partial:
        partial.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_an_unnamed_os_error_gets_the_path_it_was_writing(tmp_path):
    """PIL and numpy raise a full disk without a file name."""
    target = tmp_path / "figure.png"
    with pytest.raises(OSError) as error, files.atomic_file(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert error.value.filename == str(target)
    assert error.value.errno == errno.ENOSPC
    named = OSError(errno.EACCES, "Permission denied", "elsewhere")
    with pytest.raises(OSError) as error, files.naming(target):
        raise named
    assert error.value is named  # one that names its file stays as it is


def test_the_scratch_of_a_killed_attempt_is_removed_by_the_next(tmp_path):
    target = tmp_path / "model"
    stale = tmp_path / ".model.partial-k1ll3d"  # SIGKILL left it mid-write
    (stale / "d").mkdir(parents=True)
    (tmp_path / ".other.partial-x").mkdir()  # another output's: left alone
    with files.atomic_directory(target) as scratch:
        (scratch / "weights").write_text("w")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.partial-x", "model"]
