"""Atomic writes: the result replaces the target whole and has a plain file's mode."""

import os
import stat

import pytest

from keras_slowfast.atomic import atomic_path, write_text_atomically


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_a_plain_open_gives(tmp_path, mask):
    old = os.umask(mask)
    try:
        plain = tmp_path / "plain.txt"
        with open(plain, "w") as f:
            f.write("x")
        target = tmp_path / "atomic.txt"
        write_text_atomically(target, "x")
    finally:
        os.umask(old)
    assert _mode(target) == _mode(plain) == 0o666 & ~mask


def test_a_failed_block_leaves_the_target_and_no_temporary_file(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("new")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
