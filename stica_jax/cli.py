"""Running an absl entry point: errors a person can read, and a quiet console.

    from stica_jax import cli

    def main(argv): ...

    if __name__ == "__main__":
        cli.run(main)

`run(main)` is `absl.app.run(main)` with two differences; every command starts this way. A
command is `python -m stica_jax.<command>`: a module that holds the command alone (its flags,
`main(argv)` and the two lines above), `stica_jax/<command>.py`, or
`stica_jax/<command>/__main__.py` where the command is named after its package (`evaluate`,
`export`, `models`). Library modules define no `main` and no flags (`tests/test_commands.py`).

1. **A mistake of the user's is one line.** A bad or missing flag, an unknown `--config.x`
   field, a config file that does not exist, `app.UsageError`, and any `UserError` that `main`
   raises (`ConfigError`, `NonFiniteError`, `DatasetNotPreparedError`...) print
   `<command>: error: <message>` as one line on stderr and exit with status 2. Anything else is
   a bug and keeps its traceback.
2. **A quiet console.** Unless `--verbosity` is given or the host has a TPU, Python logging
   shows warnings and errors only (absl's default is INFO, with JAX's "Unable to initialize
   backend 'tpu'" on every machine without one), and TensorFlow's C++ start-up lines and
   TensorFlow / TFDS Python warnings are hidden (`data_pipeline.console`). A TPU host keeps
   absl's INFO level and TensorFlow's defaults, so it logs what a pod needs. `--verbosity=0`
   shows everything on any host. A host is a TPU host when a TPU chip is attached, not when
   libtpu is merely installed (`tpu_host`); on a machine with libtpu but neither a TPU nor a GPU,
   JAX is kept on the CPU (`cpu_only_with_libtpu`).

   Orbax's background threads are quiet too unless `--verbosity` is given: a failed save or
   restore is reported by the trainer in one line (`checkpointing`), while orbax logs it with
   its traceback and TensorStore's callbacks print a "RuntimeError: Event loop is closed"
   traceback for every write still in flight — hundreds of lines around the one that matters.
"""

import functools
import glob
import importlib.util
import logging as std_logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from absl import app, flags, logging
from ml_collections.config_flags.config_flags import ConfigFileFlagParser, is_config_flag

from data_pipeline import console
from data_pipeline.errors import UserError, exit_with_error


def run(main: Callable[[list[str]], Any]) -> None:
    """`absl.app.run(main)`, with one-line user errors and a quiet console (module docstring)."""
    app.run(functools.partial(_run_main, main), flags_parser=_parse_flags)


def command_name() -> str:
    """How the running command is invoked: `stica_jax.main` for `python -m stica_jax.main`."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None:
        return os.path.basename(sys.argv[0])
    return spec.name.removesuffix(".__main__")  # `python -m pkg` runs pkg.__main__


def tpu_host() -> bool:
    """True on a Cloud TPU VM: libtpu installed (`jax[tpu]`) and a TPU chip attached.

    libtpu alone is not a TPU: it is also installed on CPU machines for
    `python -m stica_jax.compile_check` (the `tpu` and `test` extras)."""
    return _libtpu_installed() and tpu_chips_attached()


# PCI device ids of TPU chips (vendor Google, 0x1ae0), as JAX reads them to decide whether to
# start its TPU backend (`jax._src.hardware_utils`): v3, v4, v5p, v5e, v6e, TPU7x and one more.
_GOOGLE_PCI_VENDOR = "0x1ae0"
_TPU_PCI_DEVICES = {"0x0027", "0x0056", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076"}


def tpu_chips_attached(pci_root: str = "/sys/bus/pci/devices") -> bool:
    """True when a TPU chip is on this machine's PCI bus."""
    for device in glob.glob(os.path.join(pci_root, "*")):
        try:
            with open(os.path.join(device, "vendor")) as f:
                vendor = f.read().strip()
            with open(os.path.join(device, "device")) as f:
                device_id = f.read().strip()
        except OSError:
            continue
        if vendor == _GOOGLE_PCI_VENDOR and device_id in _TPU_PCI_DEVICES:
            return True
    return False


def _libtpu_installed() -> bool:
    return importlib.util.find_spec("libtpu") is not None


def cpu_only_with_libtpu() -> bool:
    """libtpu installed on a machine with neither a TPU nor an NVIDIA GPU.

    There JAX would try to start a TPU backend and libtpu prints a screen of start-up errors
    (no TPU worker hostnames, no accelerator type) before JAX falls back to the CPU;
    `run` keeps JAX on the CPU instead."""
    gpu = any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvidiactl", "/dev/dxg"))
    return _libtpu_installed() and not gpu and not tpu_chips_attached()


def quiet_console() -> None:
    """Python logging at WARNING; TensorFlow's start-up lines and warnings hidden (call it before
    TensorFlow is imported)."""
    logging.set_verbosity(logging.WARNING)
    console.quiet_tensorflow()
    logging.get_absl_handler().addFilter(_not_from_orbax)
    # On asyncio's logger, not a handler: every record it logs passes, whichever handler (absl's,
    # or logging's last resort at exit) would print it.
    std_logging.getLogger("asyncio").addFilter(_not_an_orbax_task_left_unread)
    sys.unraisablehook = _hiding_closed_event_loops(sys.unraisablehook)


def _not_from_orbax(record: std_logging.LogRecord) -> bool:
    """Orbax's own reports of what its threads did, below CRITICAL, are dropped."""
    return record.levelno >= std_logging.CRITICAL or f"{os.sep}orbax{os.sep}" not in (
        record.pathname or ""
    )


def _not_an_orbax_task_left_unread(record: std_logging.LogRecord) -> bool:
    """asyncio's "Future/Task exception was never retrieved", and any other asyncio record whose
    traceback runs through orbax, dropped. After a failed restore orbax leaves its other reads'
    failures unread (the failure itself is reported in one line). asyncio logs each one with its
    traceback when it is garbage-collected, which may be long after the restore: a TensorStore
    read's future carries no orbax frame, and it was once collected after the restore's own
    filter (`checkpointing.abandoned_reads_unlogged`) had gone, as the last line of an export.
    A filter of the `asyncio` logger: it sees that logger's records only."""
    if record.getMessage().startswith(console.UNRETRIEVED_ASYNC_ERRORS):
        return False
    traceback = record.exc_info[2] if record.exc_info else None
    while traceback is not None:
        if f"{os.sep}orbax{os.sep}" in traceback.tb_frame.f_code.co_filename:
            return False
        traceback = traceback.tb_next
    return True


def _hiding_closed_event_loops(unraisablehook):
    """`unraisablehook`, except for "Event loop is closed": TensorStore reports one for each
    write still in flight when orbax's event loop has stopped (after a failed save)."""

    def hook(unraisable) -> None:
        value = unraisable.exc_value
        if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
            return
        unraisablehook(unraisable)

    return hook


def _run_main(main: Callable[[list[str]], Any], argv: list[str]) -> Any:
    if not flags.FLAGS["verbosity"].present and not tpu_host():
        quiet_console()
    if cpu_only_with_libtpu() and "JAX_PLATFORMS" not in os.environ:
        os.environ["JAX_PLATFORMS"] = "cpu"
        if "jax" in sys.modules:  # read at import: a config file may have imported JAX
            sys.modules["jax"].config.update("jax_platforms", "cpu")
    try:
        return main(argv)
    except (UserError, app.UsageError) as error:
        exit_with_error(command_name(), str(error))


def _parse_flags(argv: list[str]) -> list[str]:
    """`flags.FLAGS(argv)`, with what the user got wrong reported as one line."""
    prog = command_name()
    try:
        remaining = flags.FLAGS(argv)
    except flags.Error as error:
        if "\n" in str(error):
            raise  # a config file's get_config() failed: its traceback is the message
        exit_with_error(prog, f"{error} (--helpshort lists the flags)")
    except (AttributeError, KeyError) as error:
        # ml_collections raises these when a --config.x override names no field of the config.
        unknown = _unknown_config_overrides(argv, str(error).strip("\"'"))
        if not unknown:
            raise
        exit_with_error(prog, f"{unknown[0]}: the config has no such field")
    for name, flag in _config_flags().items():
        if flag.present and isinstance(flag.parser, ConfigFileFlagParser):
            # ml_collections defers a missing file's error to the first use of the config.
            path = flag.config_filename.split(":", 1)[0]  # "file.py:arg" passes arg to get_config
            if not os.path.isfile(path):
                exit_with_error(prog, f"--{name}={path}: no such config file")
    return remaining


def _config_flags() -> dict[str, flags.Flag]:
    """The ml_collections config flags defined (`--config` and the like), by name."""
    return {name: flags.FLAGS[name] for name in flags.FLAGS if is_config_flag(flags.FLAGS[name])}


def _unknown_config_overrides(argv: list[str], field: str) -> list[str]:
    """The `--<config>.a.b=value` arguments of `argv` whose path names `field`."""
    found = []
    for arg in argv[1:]:
        for name in _config_flags():
            match = re.match(rf"^--?(?:no)?{re.escape(name)}\.([\w.]+)", arg)
            if match and field in match.group(1).split("."):
                found.append(arg.split("=", 1)[0])
    return found
