"""TensorFlow for the input pipeline, with every GPU hidden from it.

Import `tf` from here, never `tensorflow` directly, in pipeline modules: the accelerators belong
to JAX, and a TensorFlow that sees a GPU reserves most of its memory at the first op.

With `TF_CPP_MIN_LOG_LEVEL` >= 1 (TensorFlow's switch for its C++ INFO lines, which
`data_pipeline.console.quiet_tensorflow` sets), the INFO lines TensorFlow 2.21 prints while it
loads despite that switch (its oneDNN notice, through absl logging before `absl::InitializeLog`)
are dropped too; every other line it writes to stderr meanwhile is passed on.
"""

import contextlib
import os
import re
import sys
import tempfile

# An absl / TensorFlow C++ INFO line ("I0000 00:00:1796175572.126903  6932 port.cc:153] ..."),
# and the notice absl prints before the first line it logs pre-initialisation.
_CPP_INFO_LINE = re.compile(rb"^I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] ")
_ABSL_PREINIT_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called"


def _quiet_requested() -> bool:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")) >= 1
    except ValueError:
        return False


@contextlib.contextmanager
def _cpp_info_lines_dropped():
    """Captures what is written to file descriptor 2, then re-writes it less the C++ INFO lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().splitlines(keepends=True):
                if not (_CPP_INFO_LINE.match(line) or line.startswith(_ABSL_PREINIT_NOTICE)):
                    os.write(2, line)


# Module level, in a branch (no function): TensorFlow loads quietly when asked to and not loaded.
if _quiet_requested() and "tensorflow" not in sys.modules:
    with _cpp_info_lines_dropped():
        import tensorflow as tf  # Its start-up INFO lines dropped (the module docstring).
else:
    import tensorflow as tf  # Verbose by request, or already loaded: as it is.

try:
    tf.config.set_visible_devices([], "GPU")
except RuntimeError:
    # Devices were already initialised (TF ran an op before this import); the visible set can no
    # longer change, and whoever initialised them chose it.
    pass

__all__ = ["tf"]
