"""The pretraining learning rate per step against the official script's own arrays.

facebookresearch/GDT `main_stica.py` (lines 114-127) builds the whole schedule up front and sets
`lr_schedule[iteration]` before each step (iteration = epoch × len(train_loader) + i, from 0):

    warmup_lr_schedule = np.linspace(start_warmup, base_lr, len(train_loader) * warmup_epochs)
    iters = np.arange(len(train_loader) * (epochs - warmup_epochs))
    cosine: final_lr + 0.5 * (base_lr - final_lr) * (1 + cos(pi * t / len(iters)))  for t in iters
    constant: base_lr                                                                 for t in iters

with `drop_last=True` batches, so `len(train_loader)` is ⌊examples / global batch⌋. The reference
below is that code in NumPy; the schedule under test is the one the trainer builds from a config
(`train.make_schedule`), evaluated at the step counts optax passes it (0 for the first update).
"""

import math

import numpy as np
import pytest

from configs import demo, sota
from stica_jax import train


def official_schedule(
    start_warmup, base_lr, final_lr, steps_per_epoch, warmup_epochs, epochs, cosine
):
    warmup = np.linspace(start_warmup, base_lr, steps_per_epoch * warmup_epochs)
    iters = np.arange(steps_per_epoch * (epochs - warmup_epochs))
    if cosine:
        after = np.array(
            [
                final_lr + 0.5 * (base_lr - final_lr) * (1 + math.cos(math.pi * t / len(iters)))
                for t in iters
            ]
        )
    else:
        after = np.array([base_lr for t in iters])
    return np.concatenate((warmup, after))


@pytest.mark.parametrize("decay", ["constant", "cosine"])
@pytest.mark.parametrize("warmup_epochs", [0, 1, 3])
def test_the_schedule_is_the_official_scripts_step_by_step(decay, warmup_epochs):
    config = sota.get_config()
    config.global_batch_size = 16
    config.num_epochs = 7
    o = config.optimizer
    o.base_lr, o.warmup_start_lr, o.final_lr = 0.64, 0.01, 0.002
    o.warmup_epochs, o.decay = warmup_epochs, decay
    num_examples = 16 * 5 + 9  # 5 steps per epoch: the last 9 clips are dropped, as drop_last
    schedule = train.make_schedule(config, num_examples)
    expected = official_schedule(0.01, 0.64, 0.002, 5, warmup_epochs, 7, cosine=decay == "cosine")
    assert len(expected) == 35
    got = np.array([float(schedule(step)) for step in range(len(expected))])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)  # float32


def test_the_sota_config_warms_up_over_ten_epochs_from_0_01_to_0_64_then_stays():
    """Spec: LR linearly warmed per step from 0.01 to 0.64 over 10 epochs, then constant."""
    config = sota.get_config()
    per_epoch = 3  # a small stand-in for Kinetics' epoch: the shape is per step and per epoch
    num_examples = per_epoch * config.global_batch_size
    schedule = train.make_schedule(config, num_examples)
    expected = official_schedule(0.01, 0.64, 0.0, per_epoch, 10, config.num_epochs, cosine=False)
    got = np.array([float(schedule(step)) for step in range(len(expected))])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[0] == pytest.approx(0.01) and got[29] == pytest.approx(0.64)


def test_a_fractional_warmup_is_counted_in_whole_steps():
    """The demo warms up for 0.2 epochs: ⌊0.2 × steps per epoch⌋ steps, then its constant rate."""
    config = demo.get_config()
    config.num_epochs = 2
    num_examples = 93 * config.global_batch_size  # 93 steps per epoch, as AV-digits' 1,500 clips
    schedule = train.make_schedule(config, num_examples)
    o = config.optimizer
    expected = official_schedule(o.warmup_start_lr, o.base_lr, 0.0, 93, 0, 2, cosine=False)
    expected[:18] = np.linspace(o.warmup_start_lr, o.base_lr, 18)  # int(0.2 × 93) = 18 steps
    got = np.array([float(schedule(step)) for step in range(len(expected))])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
