"""Errors a user causes and can fix, and how a command reports them.

A `UserError`'s message alone says what to change (a config value, a flag, a dataset to
prepare). Command-line entry points (`python -m stica_jax.main`, `python -m
data_pipeline.prepare`) print it as one line on stderr and exit with status 2, without a
traceback; any other exception is a bug and keeps its traceback.

This module sits in the pipeline layer so that both packages share it: `stica_jax.errors`
derives the trainer's errors from `UserError`, and `stica_jax.cli` runs absl entry points with
this reporting.
"""

import sys
from typing import NoReturn

# What argparse and absl use for a bad command line.
USAGE_EXIT_STATUS = 2


class UserError(Exception):
    """An error the user can fix from its one-line message; reported without a traceback."""


def _lines(message: object) -> list[str]:
    """The non-blank lines of `str(message)`, stripped."""
    return [line.strip() for line in str(message).splitlines() if line.strip()]


def one_line(message: object, max_lines: int | None = None) -> str:
    """`message` with its lines joined by spaces (a user error is reported as one line).

    With `max_lines`, only the first `max_lines` lines and a count of the others (a report of
    mismatched keys can run to hundreds of lines).
    """
    lines = _lines(message)
    if max_lines is None or len(lines) <= max_lines:
        return " ".join(lines)
    return " ".join(lines[:max_lines]) + f" ... ({len(lines) - max_lines} more lines)"


def first_line(message: object) -> str:
    """The first non-blank line of `str(message)` (an exception's: its message), stripped; ''
    when there is none."""
    lines = _lines(message)
    return lines[0] if lines else ""


def error_line(error: BaseException) -> str:
    """`Type: first line` of `error` (`Type: (no message)` without one)."""
    return f"{type(error).__name__}: {first_line(error) or '(no message)'}"


def exit_with_error(prog: str, message: str) -> NoReturn:
    """Print `prog: error: message` as one line on stderr and exit with status 2."""
    sys.stdout.flush()
    sys.stderr.write(f"{prog}: error: {one_line(message)}\n")
    sys.stderr.flush()
    raise SystemExit(USAGE_EXIT_STATUS)
