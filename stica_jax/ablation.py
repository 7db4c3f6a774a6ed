"""The paper's ablations as config variants, trained over seeds, and their table
(`python -m stica_jax.ablate` runs them; `docs/ablations.md`).

`plan` checks the baseline and each variant of it (`VARIANTS`) before any training; `ablate`
trains every (variant, seed) through `train.train_and_evaluate`, each run in its own
`DIR/<variant>/seed<k>`, and formats the online probe's top-1 per modality as mean ± std over
seeds beside the baseline (`format_table`). A finished run leaves `result.json` and is not
trained again, so an interrupted ablation resumes where it stopped (an unfinished run resumes
from its checkpoint). The table is also written to `DIR/table.txt`.

The variants are the paper's ablations (seed §6; the abstract: feature crops and transformer
pooling each help) and the two places where the official code departs from the spec's earlier
wording (spec §6: crop pairs, detached keys).
"""

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from data_pipeline.errors import UserError
from stica_jax import config_checks
from stica_jax.errors import ConfigError


class AblationError(UserError, ValueError):
    """An ablation that cannot run; the message says what to change (`python -m
    stica_jax.ablate` prints it as one line and exits with status 2)."""


@dataclasses.dataclass(frozen=True)
class Variant:
    help: str
    apply: Callable[[ml_collections.ConfigDict], None]


def _set(section: str, field: str, value: Any) -> Callable[[ml_collections.ConfigDict], None]:
    def apply(config: ml_collections.ConfigDict) -> None:
        setattr(config[section], field, value)

    return apply


def _clip_length(factor: float) -> Callable[[ml_collections.ConfigDict], None]:
    """Clips `factor`× as long at the same frame rate: frames, audio and temporal crops scale."""

    def apply(config: ml_collections.ConfigDict) -> None:
        config.input.num_frames = round(config.input.num_frames * factor)
        config.input.audio_seconds = config.input.audio_seconds * factor
        for field in ("time_large", "time_small"):
            if config.crops[field]:
                config.crops[field] = max(1, round(config.crops[field] * factor))

    return apply


VARIANTS = {
    "avg_pooling": Variant("average temporal pooling (seed §6.1)", _set("model", "pooling", "avg")),
    "transformer_pooling": Variant(
        "transformer temporal pooling (seed §6.2)", _set("model", "pooling", "transformer")
    ),
    "no_crops": Variant(
        "no feature crops: the cross-modal NCE alone", _set("crops", "enabled", False)
    ),
    "all_pairs": Variant(
        "every large↔large crop pair (spec §6)", _set("loss", "crop_pairs", "all")
    ),
    "official_pairs": Variant(
        "one large↔large pair, official (spec §6)", _set("loss", "crop_pairs", "official")
    ),
    "attached_keys": Variant("gradients through the keys", _set("loss", "detach_keys", False)),
    "detached_keys": Variant("keys detached, official", _set("loss", "detach_keys", True)),
    "long_clips": Variant(
        "2× the clip length (the 30 → 60 frames of seed §6.1, scaled)", _clip_length(2.0)
    ),
    "short_clips": Variant("½ the clip length (60 → 30 frames, scaled)", _clip_length(0.5)),
}


def default_variants(config: ml_collections.ConfigDict) -> list[str]:
    """The five ablations, each the opposite of the baseline's setting."""
    return [
        "avg_pooling" if config.model.pooling == "transformer" else "transformer_pooling",
        "no_crops",
        "all_pairs" if config.loss.crop_pairs == "official" else "official_pairs",
        "attached_keys" if config.loss.detach_keys else "detached_keys",
        "long_clips",
    ]


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def changes(baseline: ml_collections.ConfigDict, variant: ml_collections.ConfigDict) -> str:
    """`field=value` for every config field the variant changes, e.g. `model.pooling='avg'`."""
    a, b = _flat(baseline.to_dict()), _flat(variant.to_dict())
    return " ".join(f"{k}={b[k]!r}" for k in sorted(b) if a.get(k) != b[k])


def variant_configs(
    baseline: ml_collections.ConfigDict, names: list[str]
) -> dict[str, ml_collections.ConfigDict]:
    """`{"baseline": baseline, name: changed copy}`; raises AblationError for an unknown or a
    no-op variant."""
    configs = {"baseline": baseline}
    for name in names:
        if name not in VARIANTS:
            raise AblationError(f"unknown variant {name!r}; expected some of {sorted(VARIANTS)}")
        if name in configs:
            raise AblationError(f"variant {name!r} is given twice")
        config = baseline.copy_and_resolve_references()
        VARIANTS[name].apply(config)
        if not changes(baseline, config):
            raise AblationError(
                f"variant {name!r} changes nothing: the baseline config has it already"
            )
        configs[name] = config
    return configs


def run_one(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Train and probe one (variant, seed) into `workdir`; reuse its `result.json` if present."""
    # Late: train loads TensorFlow (clu, tf.data), after `stica_jax.ablate` quieted the console
    # and hid the GPUs from it (`data_pipeline.tensorflow_cpu`).
    from stica_jax import train

    path = os.path.join(workdir, "result.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    summary = train.train_and_evaluate(config, workdir)
    if "probe" not in summary:
        raise AblationError(
            f"the run in {workdir} reported no probe table; the ablation needs an online eval "
            "(config.eval.method and a prepared config.eval.dataset)"
        )
    result = {"probe": summary["probe"], "wall_seconds": summary["wall_seconds"]}
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return result


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"


def format_table(
    configs: dict[str, ml_collections.ConfigDict],
    results: dict[str, list[dict[str, Any]]],
    header: str,
) -> str:
    """Mean ± std (n-1) over seeds per modality, and each variant's difference of the means."""
    modalities = list(results["baseline"][0]["probe"]["trained"])
    rows = {name: [r["probe"]["trained"] for r in runs] for name, runs in results.items()}
    base = {m: np.mean([acc[m] for acc in rows["baseline"]]) for m in modalities}
    init = [r["probe"]["random init"] for r in results["baseline"] if "random init" in r["probe"]]
    lines = [header]
    head = f"{'variant':<20}" + "".join(f"{m:>15}" for m in modalities)
    lines.append(head + "".join(f"{'Δ ' + m:>9}" for m in modalities) + "  change")
    for name, accs in rows.items():
        cells = "".join(f"{_mean_std([a[m] for a in accs]):>15}" for m in modalities)
        if name == "baseline":
            deltas, change = " " * 9 * len(modalities), "(the config as given)"
        else:
            deltas = "".join(
                f"{np.mean([a[m] for a in accs]) - base[m]:>+9.1f}" for m in modalities
            )
            change = changes(configs["baseline"], configs[name])
        lines.append(f"{name:<20}{cells}{deltas}  {change}")
    if init:
        cells = "".join(f"{_mean_std([a[m] for a in init]):>15}" for m in modalities)
        deltas = "".join(f"{np.mean([a[m] for a in init]) - base[m]:>+9.1f}" for m in modalities)
        lines.append(f"{'random init':<20}{cells}{deltas}  (the baseline, untrained)")
    return "\n".join(lines)


def plan(
    baseline: ml_collections.ConfigDict, names: list[str] | None, seeds: int
) -> dict[str, ml_collections.ConfigDict]:
    """The configs to train (`"baseline"` first), each checked by `config_checks.validate_config`.

    Raises AblationError naming the variant for anything that cannot run, before any training.
    """
    if seeds < 1:
        raise AblationError(f"--seeds={seeds} must be at least 1")
    configs = variant_configs(baseline, default_variants(baseline) if names is None else names)
    for name, config in configs.items():
        try:
            config_checks.validate_config(
                config, num_devices=jax.device_count(), num_processes=jax.process_count()
            )
        except ConfigError as e:
            raise AblationError(f"{name}: {e}") from None
    return configs


def ablate(configs: dict[str, ml_collections.ConfigDict], workdir: str, seeds: int) -> str:
    """Run every (variant, seed) of `plan`'s configs not yet done under `workdir`; the table."""
    total, done, t0 = len(configs) * seeds, 0, time.time()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    # Seed-major: a stopped ablation leaves whole rows of the first seeds.
    for seed in range(seeds):
        for name, config in configs.items():
            run_config = config.copy_and_resolve_references()
            run_config.seed = seed
            # Only the baseline is probed at random init too: the table's floor.
            run_config.eval.compare_random_init = name == "baseline"
            result = run_one(run_config, os.path.join(workdir, name, f"seed{seed}"))
            results[name].append(result)
            done += 1
            accs = " ".join(f"{m} {a:.1f}" for m, a in result["probe"]["trained"].items())
            print(
                f"[{done}/{total}] {name} seed {seed}: {accs} "
                f"({result['wall_seconds'] / 60:.1f} min)",
                flush=True,
            )
    wall = time.time() - t0
    e = configs["baseline"].eval
    header = (
        f"{e.method} top-1 (%) on {e.dataset} {e.test_split}, mean ± std over {seeds} seed(s); "
        f"{total} trainings, {wall / 60:.1f} min wall (this invocation)"
    )
    table = format_table(configs, results, header)
    with open(os.path.join(workdir, "table.txt"), "w") as f:
        f.write(table + "\n")
    return table
