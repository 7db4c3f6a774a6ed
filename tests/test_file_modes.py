"""Files written for people (configs, metrics, reports, exports) are readable by colleagues on a
shared machine: the mode any new file of the process gets (0644 under umask 022, which the suite
runs with: tests/conftest.py), not a temporary file's 0600."""

import os
import stat

import pytest

from data_pipeline import atomic_file


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_an_atomic_write_gets_the_mode_of_a_plain_new_file(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as file:  # the reference: what open() creates
            file.write("x")
        atomic_file.write_text(tmp_path / "atomic.txt", "x")
        atomic_file.write_text(tmp_path / "atomic.txt", "rewritten")  # over an existing file
        atomic_file.write_bytes(tmp_path / "atomic.bin", b"\x00\x01")
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "atomic.txt") == _mode(tmp_path / "plain.txt") == 0o666 & ~umask
    assert _mode(tmp_path / "atomic.bin") == 0o666 & ~umask
    assert (tmp_path / "atomic.txt").read_text() == "rewritten"
    assert (tmp_path / "atomic.bin").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path)) == ["atomic.bin", "atomic.txt", "plain.txt"]


@pytest.mark.slow  # the session's trained run (fixture `trained`)
def test_a_trained_workdir_is_readable_by_colleagues(trained):
    _, workdir = trained
    files = [
        os.path.join(directory, name) for directory, _, names in os.walk(workdir) for name in names
    ]
    assert {"config.json", "metrics.jsonl"} <= {os.path.basename(f) for f in files}
    private = [f for f in files if _mode(f) != 0o644]
    assert not private, [(os.path.relpath(f, workdir), oct(_mode(f))) for f in private]
