"""Orbax checkpoints of the train state, and the run's config beside them in the workdir.

A workdir holds `config.json` (the run's config) and `checkpoints/<step>/` (orbax). The input
position needs no extra record: the pipeline resumes exactly at a step (`start_step`), and all
randomness is a function of the step / global sample index. Rebuilding a trained model from a
workdir needs the trainer too, so it lives a step above, in `stica_jax.restore`.

Damage is survived, never hidden:
- `restore_newest` tries the checkpoints newest first; one that fails to restore while an older
  one restores is moved aside (`checkpoints/12` → `checkpoints/12.corrupt`, never deleted) and
  reported in one line. When none restores, nothing is moved and `CheckpointError` says why: a
  run never silently starts over beside checkpoints it could not read.
- `config_changes` compares a restart's config with the saved one (the workdir's contract).
- `config.json` is written atomically.
"""

import contextlib
import gc
import json
import logging as std_logging
import os
import re
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint._src.metadata import array_metadata_store
from orbax.checkpoint._src.serialization.type_handler_registry import GLOBAL_TYPE_HANDLER_REGISTRY

from data_pipeline import atomic_file
from data_pipeline.console import UNRETRIEVED_ASYNC_ERRORS
from data_pipeline.errors import error_line
from stica_jax import distributed
from stica_jax.errors import CheckpointError, WorkdirError

# Orbax saves a replicated array in slices, one written by each replica ("replica-parallel"),
# and cuts each slice with a compiled `slice`: one compile per array shape the first time a
# process saves, 120 of them (~8 s) in the tiny demo's first save on a CPU, more under XLA's
# default optimisation. Slices pay off for large arrays only: below this size one replica
# writes the whole array. The rest of the handler is orbax's default (its array metadata store).
MIN_REPLICA_SLICE_BYTES = 4 << 20
# (Through the registry itself: `ocp.type_handlers.register_type_handler` logs a warning on
# every import of this module that overrides a handler.)
GLOBAL_TYPE_HANDLER_REGISTRY.add(
    jax.Array,
    ocp.type_handlers.ArrayHandler(
        array_metadata_store=array_metadata_store.Store(),
        min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES,
    ),
    override=True,
    ignore_warnings=True,
)

CONFIG_FILE = "config.json"
CORRUPT_SUFFIX = ".corrupt"
# The fields that define what a workdir's checkpoints are: the network and its objective, and
# which batches each step reads (batch, seed, data, split, data shards). A restart may change
# anything else (epochs, learning rate, logging, evaluation).
CONTRACT_FIELDS = (
    "mode",
    "model",
    "supervised",
    "crops",
    "input",
    "av_digits",
    "seed",
    "global_batch_size",
    "train_split",
    "input_shards",
)


def make_manager(
    workdir: str, *, keep: int = 3, every_steps: int = 1, async_save: bool = True
) -> ocp.CheckpointManager:
    """A manager of `workdir/checkpoints`: keeps the last `keep`, saves asynchronously.

    Orbax writes each checkpoint to a temporary directory and renames it when complete, so a
    job killed mid-save restarts from the latest *complete* checkpoint. On multi-host jobs
    `reached_preemption` syncs a preemption notice across hosts (orbax's sync point).
    """
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        save_interval_steps=every_steps,
        enable_async_checkpointing=async_save,
        create=True,
    )
    return ocp.CheckpointManager(epath.Path(workdir) / "checkpoints", options=options)


class Saver:
    """Saves of the train state through `manager`, whose failures stop the run in one line.

    Orbax writes asynchronously: a save that fails (a full disk, a lost mount) raises in a
    background thread, and surfaces at a later save or wait. `check()`, called every step,
    raises it as soon as it is known as a `CheckpointError` naming the failed step, the OS
    error and the last good checkpoint.
    """

    def __init__(self, manager: ocp.CheckpointManager):
        self.manager = manager
        self._saving: int | None = None  # the step of the last save started

    def save(self, step: int, state: Any) -> None:
        self.check()
        self._saving = step
        try:
            self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
        except Exception as error:
            raise self._failed(error) from error

    def check(self) -> None:
        """Raise `CheckpointError` if a save started earlier has failed."""
        try:
            self.manager.check_for_errors()
        except Exception as error:
            raise self._failed(error) from error

    def wait(self) -> None:
        """Wait for the save in flight; raise `CheckpointError` if it failed."""
        try:
            self.manager.wait_until_finished()
        except Exception as error:
            raise self._failed(error) from error

    def _failed(self, error: Exception) -> CheckpointError:
        reason = first_error(error)
        code = re.search(r"os_error_code='?(\d+)", reason)
        if code:  # TensorStore wraps the OS error of a write; lead with it
            reason = f"[Errno {code.group(1)}] {os.strerror(int(code.group(1)))} ({reason})"
        good = [s for s in self.manager.all_steps() if self._saving is None or s < self._saving]
        last = f"step {max(good)}" if good else "none"
        return CheckpointError(
            f"saving the checkpoint of step {self._saving} in {self.manager.directory} failed: "
            f"{reason}; the run stops here. The last good checkpoint: {last}"
        )


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Write the run's config next to its checkpoints, atomically (process 0 only)."""
    if jax.process_index() == 0:
        atomic_file.write_text(
            os.path.join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2) + "\n"
        )


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The config `save_config` wrote into `workdir` (JSON lists back as tuples)."""
    path = epath.Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a stica_jax workdir?")
    return ml_collections.ConfigDict(_lists_to_tuples(json.loads(path.read_text())))


def _lists_to_tuples(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _lists_to_tuples(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return tuple(_lists_to_tuples(v) for v in tree)
    return tree


def check_saved_config(
    workdir: str, config: ml_collections.ConfigDict, *, allow_changes: bool = False
) -> None:
    """Refuse to go on in `workdir` with a config that changes its contract (`CONTRACT_FIELDS`).

    Called before anything is written. A workdir without `config.json` is new. With
    `allow_changes` the changes are logged as a warning instead.

    Raises:
      WorkdirError: one line: the changed fields, old → new, and the ways out.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    try:
        saved = load_config(workdir)
    except ValueError as error:
        raise WorkdirError(f"{path} is not a readable config ({error})") from None
    changes = config_changes(saved, config)
    if not changes:
        return
    if allow_changes:
        logging.warning("%s: going on with a changed config: %s", workdir, "; ".join(changes))
        return
    raise WorkdirError(
        f"{workdir} holds a run of another config: {'; '.join(changes)}. Restart with its "
        f"config ({path}), use another --workdir, or pass --config_change=allow to go on with "
        "the new values"
    )


def config_changes(
    saved: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> list[str]:
    """`"field: saved → new"` for each `CONTRACT_FIELDS` value `config` changes from `saved`.

    Values are compared as `config.json` holds them (JSON, lists as tuples); a field present on
    one side only counts as a change.
    """
    before, after = _flat(_as_saved(saved)), _flat(_as_saved(config))
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if key.split(".")[0] not in CONTRACT_FIELDS or before.get(key) == after.get(key):
            continue
        old = repr(before[key]) if key in before else "(absent)"
        new = repr(after[key]) if key in after else "(absent)"
        changes.append(f"{key}: {old} → {new}")
    return changes


def _as_saved(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return _lists_to_tuples(json.loads(config.to_json_best_effort()))


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def restore_state(
    manager: ocp.CheckpointManager,
    abstract_state: Any,
    step: int | None = None,
    *,
    partial: bool = False,
):
    """(state, step): the saved state at `step`, or with `step` None the newest that restores
    (`restore_newest`), shaped and sharded like `abstract_state`.

    `partial`: `abstract_state` is a dict of some of the saved `TrainState`'s fields (e.g.
    `params` and `batch_stats` without the optimizer state), and only those are read; the
    manager must not have saved in this process.

    Raises:
      CheckpointError: no checkpoint at all, or none that restores (or not `step`).
    """
    if step is None:
        restored = restore_newest(manager, abstract_state, partial=partial)
        if restored is None:
            raise CheckpointError(f"no checkpoint in {manager.directory}")
        return restored
    if step not in manager.all_steps():
        raise CheckpointError(
            f"no checkpoint of step {step} in {manager.directory} "
            f"(steps: {', '.join(map(str, sorted(manager.all_steps()))) or 'none'})"
        )
    try:
        return _restore(manager, step, abstract_state, partial), step
    except Exception as error:
        raise CheckpointError(
            f"the checkpoint of step {step} in {manager.directory} cannot be restored: "
            f"{first_error(error)}"
        ) from error


def restore_newest(
    manager: ocp.CheckpointManager, abstract_state: Any, *, partial: bool = False
) -> tuple[Any, int] | None:
    """(state, step) of the newest checkpoint that restores; None when there is no checkpoint.
    `partial` as in `restore_state`.

    Each newer checkpoint that failed is then moved aside to `<step>.corrupt` (process 0) and
    reported in one warning line naming its step and first error. On multi-host jobs a
    checkpoint counts as restored only when every process restored it.

    Raises:
      CheckpointError: there are checkpoints (or ones set aside earlier) and none restores; they
        are left where they are.
    """
    directory = epath.Path(manager.directory)
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
        set_aside = sorted(p.name for p in _set_aside_checkpoints(directory))
        if set_aside:
            raise CheckpointError(
                f"{directory} holds only checkpoints set aside as unreadable "
                f"({', '.join(set_aside)}); to start this run over, move them out of the way"
            )
        return None
    failures: list[tuple[int, str]] = []
    for step in steps:
        try:
            state, error = _restore(manager, step, abstract_state, partial), None
        except Exception as caught:  # orbax and TensorStore raise many kinds; all mean unreadable
            state, error = None, caught
        if distributed.all_processes_agree(error is None):
            break
        if error is None:
            reason = "it failed on another process"
        elif not any((directory / str(step)).iterdir()):
            reason = "its directory is empty"
        else:
            reason = first_error(error)
        failures.append((step, reason))
    else:
        newest, reason = failures[0]
        raise CheckpointError(
            f"no checkpoint in {directory} can be restored (steps "
            f"{', '.join(str(s) for s, _ in failures)}); step {newest}: {reason}"
        )
    for failed, reason in failures:
        moved = _move_aside(directory, failed)
        logging.warning(
            "the checkpoint of step %d cannot be restored (%s); moved it to %s and resumed from "
            "step %d",
            failed,
            reason,
            moved,
            step,
        )
    if failures:
        manager.reload()
    return state, step


def _restore(
    manager: ocp.CheckpointManager, step: int, abstract_state: Any, partial: bool = False
) -> Any:
    """The state of checkpoint `step`, without asyncio's log of a failed read's leftovers."""
    if partial:
        args = ocp.args.PyTreeRestore(
            abstract_state,
            restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state),
            partial_restore=True,
        )
    else:
        args = ocp.args.StandardRestore(abstract_state)
    with abandoned_reads_unlogged():
        return manager.restore(step, args=args)


class _UnretrievedAsyncErrors(std_logging.Filter):
    """Drops asyncio's "Future/Task exception was never retrieved" records."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return not record.getMessage().startswith(UNRETRIEVED_ASYNC_ERRORS)


@contextlib.contextmanager
def abandoned_reads_unlogged():
    """Within: asyncio does not log the errors of a failed restore's abandoned reads.

    Orbax reads a checkpoint's arrays concurrently. When one read fails, the restore raises
    that error (reported in one line by the callers) and the reads still in flight are
    abandoned; when their failed futures are collected, asyncio logs each one with its
    traceback, a screenful per damaged checkpoint, and whether it does depends on timing. The
    futures are collected before the filter is removed.
    """
    log = std_logging.getLogger("asyncio")
    quiet = _UnretrievedAsyncErrors()
    log.addFilter(quiet)
    try:
        yield
    finally:
        gc.collect()
        log.removeFilter(quiet)


def first_error(error: BaseException) -> str:
    """`Type: first line` of the innermost cause of `error`: the real error, not its wrappers."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
        if inner is None:
            break
        error = inner
    return error_line(error)


def _set_aside_checkpoints(directory: epath.Path) -> list[epath.Path]:
    if not directory.exists():
        return []
    return [p for p in directory.iterdir() if p.name.endswith(CORRUPT_SUFFIX)]


def _move_aside(directory: epath.Path, step: int) -> str:
    """`<step>` → `<step>.corrupt` (`.corrupt.2`... if taken) by process 0; returns the name."""
    source = directory / str(step)
    target = directory / f"{step}{CORRUPT_SUFFIX}"
    n = 1
    while target.exists():
        n += 1
        target = directory / f"{step}{CORRUPT_SUFFIX}.{n}"
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"checkpoint {step} named")  # all named it alike
    if jax.process_index() == 0:
        source.rename(target)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"checkpoint {step} set aside")
    return str(target)
