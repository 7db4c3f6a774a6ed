"""What the input pipeline's libraries may print on a user's console.

TensorFlow and TFDS serve the input pipeline only. Their start-up lines (TensorFlow's C++ INFO
notices about oneDNN and CPU instructions) and their Python warnings (deprecation notices inside
TFDS, notes on custom builder configs) speak to their own developers, not to a person preparing
data or training. `quiet_tensorflow()` hides them; errors still show.
"""

import logging
import os

# How asyncio's log records of a failed future or task that nobody awaited begin. Orbax leaves
# them behind a failed restore (`stica_jax.checkpointing.abandoned_reads_unlogged`, and the
# command-line console of `stica_jax.cli`).
UNRETRIEVED_ASYNC_ERRORS = (
    "Future exception was never retrieved",
    "Task exception was never retrieved",
)

# Python files of TensorFlow and TFDS.
_LIBRARY_DIRS = (f"{os.sep}tensorflow{os.sep}", f"{os.sep}tensorflow_datasets{os.sep}")


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ INFO lines and TensorFlow / TFDS Python warnings (not errors).

    Call it before TensorFlow is imported: it sets `TF_CPP_MIN_LOG_LEVEL=1` unless the
    environment sets it (`TF_CPP_MIN_LOG_LEVEL=0` keeps every line), which
    `data_pipeline.tensorflow_cpu` also reads for the lines TensorFlow prints while it loads.
    """
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1") == "0":
        return
    # TFDS logs through absl's logger, TensorFlow through its own.
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).addFilter(_not_a_tensorflow_warning)


def _not_a_tensorflow_warning(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or not any(
        directory in record.pathname for directory in _LIBRARY_DIRS
    )
