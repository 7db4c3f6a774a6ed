import pytest

from data_pipeline.errors import error_line, first_line, one_line

REPORT = "\n  mismatch:\n\n  missing a\n  missing b  \n  missing c\n  unexpected d\n"


def test_one_line_joins_the_non_blank_lines():
    assert one_line(REPORT) == "mismatch: missing a missing b missing c unexpected d"
    assert "\n" not in one_line(ValueError(REPORT))


def test_a_long_report_keeps_its_head_and_counts_the_rest():
    assert one_line(REPORT, max_lines=2) == "mismatch: missing a ... (3 more lines)"
    assert one_line(REPORT, max_lines=5) == one_line(REPORT)


@pytest.mark.parametrize(
    "message, first", [(REPORT, "mismatch:"), ("one", "one"), ("", ""), ("\n \n", "")]
)
def test_first_line_is_the_first_non_blank_line(message, first):
    assert first_line(message) == first == first_line(ValueError(message))


def test_error_line_names_the_type_and_the_first_line():
    assert error_line(OSError(REPORT)) == "OSError: mismatch:"
    assert error_line(RuntimeError()) == "RuntimeError: (no message)"
