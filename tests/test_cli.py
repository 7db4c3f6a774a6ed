"""`stica_jax.cli.run`: a user's mistake is one line with exit status 2, a bug keeps its
traceback, and the console is quiet unless `--verbosity` asks."""

import textwrap

import pytest

from tests.command_line import run_fresh, stderr_lines

ENTRY_POINT = textwrap.dedent(
    """
    import asyncio
    import gc

    from absl import flags, logging

    from stica_jax import cli
    from stica_jax.errors import ConfigError, NonFiniteError

    _FAIL = flags.DEFINE_enum("fail", "no", ["no", "config", "nonfinite", "bug", "unread"], "What to raise.")


    def main(argv):
        logging.info("an info line")
        logging.warning("a warning line")
        if _FAIL.value == "config":
            raise ConfigError("global_batch_size=12 is not divisible by the 8 devices")
        if _FAIL.value == "nonfinite":
            raise NonFiniteError("non-finite loss at step 7")
        if _FAIL.value == "bug":
            raise RuntimeError("an honest bug")
        if _FAIL.value == "unread":  # a failed read nobody awaits, as a failed restore leaves
            loop = asyncio.new_event_loop()
            future = loop.create_future()
            future.set_exception(OSError("Requested byte range [0, 106825) is not valid"))
            del future
            gc.collect()
            loop.close()
        print("done")


    if __name__ == "__main__":
        cli.run(main)
    """
)


@pytest.fixture
def entry_point(tmp_path):
    """Runs ENTRY_POINT as `python entry.py ARGS` from an empty directory with an empty home."""
    (tmp_path / "home").mkdir()
    (tmp_path / "cwd").mkdir()
    (tmp_path / "entry.py").write_text(ENTRY_POINT)

    def run(*args):
        return run_fresh(
            [str(tmp_path / "entry.py"), *args],
            home=str(tmp_path / "home"),
            cwd=str(tmp_path / "cwd"),
            timeout=120,
        )

    return run


@pytest.mark.parametrize(
    "fail,message",
    [
        ("config", "global_batch_size=12 is not divisible by the 8 devices"),
        ("nonfinite", "non-finite loss at step 7"),
    ],
)
def test_a_user_error_is_one_line_and_exit_status_2(entry_point, fail, message):
    result = entry_point(f"--fail={fail}")
    assert result.returncode == 2
    assert stderr_lines(result)[-1] == f"entry.py: error: {message}"
    assert "Traceback" not in result.stderr


def test_a_bad_flag_is_one_line_and_exit_status_2(entry_point):
    result = entry_point("--fail=maybe")
    assert result.returncode == 2
    (line,) = stderr_lines(result)
    assert line.startswith("entry.py: error: flag --fail=maybe: value should be one of")


def test_a_bug_keeps_its_traceback(entry_point):
    result = entry_point("--fail=bug")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("RuntimeError: an honest bug")


def test_the_console_shows_warnings_unless_verbosity_asks_for_more(entry_point):
    quiet = entry_point()
    assert quiet.returncode == 0 and quiet.stdout == "done\n"
    assert "a warning line" in quiet.stderr and "an info line" not in quiet.stderr
    verbose = entry_point("--verbosity=0")
    assert verbose.returncode == 0
    assert "a warning line" in verbose.stderr and "an info line" in verbose.stderr


def test_a_failed_read_left_unread_is_not_shown_unless_verbosity_asks(entry_point):
    """A failed restore leaves futures whose errors nobody retrieves; asyncio logs each with its
    traceback whenever it is collected, which can be after the restore (an export's last line
    was one, in CI). The console drops them; `--verbosity` shows them."""
    quiet = entry_point("--fail=unread")
    assert quiet.returncode == 0 and quiet.stdout == "done\n"
    assert "never retrieved" not in quiet.stderr and "OSError" not in quiet.stderr, quiet.stderr
    assert "a warning line" in quiet.stderr  # other records still show
    verbose = entry_point("--fail=unread", "--verbosity=0")
    assert "Future exception was never retrieved" in verbose.stderr, verbose.stderr
    assert "OSError: Requested byte range" in verbose.stderr
