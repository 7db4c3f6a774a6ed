"""The official fine-tuning optimizer: torch SGD over three parameter groups (head, backbone,
pooling), each on the per-epoch schedule of `eval_video.py` (`GradualWarmupScheduler` chained
with `MultiStepLR`), as `stica_jax.evaluate.finetune` trains with it."""

import bisect
from collections.abc import Callable, Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from stica_jax import step as step_lib


def official_lr_factors(
    num_epochs: int,
    *,
    warmup_epochs: int,
    multiplier: float,
    milestones: Sequence[int],
    gamma: float,
) -> list[float]:
    """The LR of each epoch (from 0) as a multiple of the base LR, as the official fine-tuning
    gets it.

    `eval_video.py` chains `GradualWarmupScheduler(multiplier, total_epoch=warmup_epochs,
    after_scheduler=MultiStepLR(milestones - warmup_epochs, gamma))` (`src/scheduler.py`) and
    steps it once after each epoch. Epoch e ≤ warmup trains at `1 + (multiplier - 1) e / warmup`
    (1, 4.5, 8 for multiplier 8 over 2 epochs). After that the warmup scheduler hands over: the
    `MultiStepLR` starts from `multiplier × base` and counts its own epochs from 0 at epoch
    warmup + 1, so a milestone m takes effect at epoch m + 1 (epochs 7 and 11 for "6,10"). The
    official run: 1, 4.5, 8, 8, 8, 8, 8, 0.4, 0.4, 0.4, 0.4, 0.02.
    """
    shifted = sorted(m - warmup_epochs for m in milestones)
    if warmup_epochs == 0:  # eval_video.py then steps the MultiStepLR alone
        return [gamma ** bisect.bisect_right(shifted, epoch) for epoch in range(num_epochs)]
    factors = []
    for epoch in range(num_epochs):
        if epoch <= warmup_epochs:
            factors.append(1.0 + (multiplier - 1.0) * epoch / warmup_epochs)
        else:
            after = epoch - warmup_epochs - 1  # the MultiStepLR's own epoch count
            factors.append(multiplier * gamma ** bisect.bisect_right(shifted, after))
    return factors


def epoch_schedule(base_lr: float, factors: Sequence[float], steps_per_epoch: int) -> Callable:
    """optax schedule: `base_lr × factors[step // steps_per_epoch]` (held after the last epoch)."""
    table = jnp.asarray(np.asarray(factors, np.float64) * base_lr, jnp.float32)

    def schedule(step):
        return table[jnp.minimum(step // steps_per_epoch, len(factors) - 1)]

    return schedule


# Parameter groups by the classifier's top-level attribute (official: classifier / base /
# pooling_arch, each with its own LR and weight decay).
GROUPS = {"fc": "head", "video_backbone": "backbone", "video_pooling": "pooling"}


def official_optimizer(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, dict[str, Callable]]:
    """torch SGD over the official parameter groups: per group `add_decayed_weights(wd)` then
    heavy-ball momentum (torch's coupled weight decay, dampening 0), at the group's base LR on
    `official_lr_factors` (`step.make_group_optimizer`). Returns (optimizer, {group: LR
    schedule})."""
    o = config.optimizer
    factors = official_lr_factors(
        config.num_epochs,
        warmup_epochs=o.warmup_epochs,
        multiplier=o.warmup_multiplier,
        milestones=tuple(o.milestones),
        gamma=o.gamma,
    )
    groups = {
        "head": (o.head_lr, o.weight_decay),
        "backbone": (o.backbone_lr, o.backbone_weight_decay),
        "pooling": (o.pooling_lr, o.pooling_weight_decay),
    }
    schedules = {g: epoch_schedule(lr, factors, steps_per_epoch) for g, (lr, _) in groups.items()}
    optimizer = step_lib.make_group_optimizer(
        {g: (schedules[g], wd) for g, (_, wd) in groups.items()},
        lambda path: GROUPS[path[0].key],
        momentum=o.momentum,
    )
    return optimizer, schedules
