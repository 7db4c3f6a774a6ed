"""`stica_jax.checkpointing` pieces that the end-to-end tests (tests/test_reliability.py) reach
only by chance: asyncio's logging of a failed restore's abandoned reads depends on timing."""

import asyncio
import gc
import logging

from stica_jax import checkpointing


def _abandon_a_failed_read():
    """A future whose exception nobody retrieves, as orbax leaves them when one read fails."""
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()
        future.set_exception(OSError("Error reading byte range of a truncated file"))
        del future
        gc.collect()
    finally:
        loop.close()


def test_a_failed_restores_abandoned_reads_are_not_logged_and_other_errors_still_are(caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        _abandon_a_failed_read()  # the control: asyncio logs it with its traceback
        assert [r.getMessage().splitlines()[0] for r in caplog.records] == [
            "Future exception was never retrieved"
        ]
        caplog.clear()
        with checkpointing.abandoned_reads_unlogged():
            _abandon_a_failed_read()
            logging.getLogger("asyncio").error("another asyncio error")
        assert [r.getMessage() for r in caplog.records] == ["another asyncio error"]
        _abandon_a_failed_read()  # the filter is gone afterwards
        assert len(caplog.records) == 2
