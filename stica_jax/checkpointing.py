"""Orbax checkpoints of the train state, and the run's config beside them in the workdir.

A workdir holds `config.json` (the run's config) and `checkpoints/<step>/` (orbax). The input
position needs no extra record: the pipeline resumes exactly at a step (`start_step`), and all
randomness is a function of the step / global sample index. Rebuilding a trained model from a
workdir needs the trainer too, so it lives a step above, in `stica_jax.restore`.
"""

import json
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

CONFIG_FILE = "config.json"


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


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Write the run's config next to its checkpoints (process 0 only)."""
    if jax.process_index() == 0:
        path = epath.Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_FILE).write_text(config.to_json_best_effort(indent=2))


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


def restore_state(manager: ocp.CheckpointManager, abstract_state: Any, step: int | None = None):
    """The saved state at `step` (default latest) shaped and sharded like `abstract_state`."""
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {manager.directory}")
    return manager.restore(step, args=ocp.args.StandardRestore(abstract_state)), step
