"""Supervised Kinetics-400 training with feature crops: "2 medium and 2 small latent space
crops" (seed §7.3, Table 8, "Fm-Crop ✓": 69.0 HMDB-51 top-1 after fine-tuning).

Each crop of the 8×7×7 map is pooled and classified like the full map, and its cross-entropy
against the clip's label is averaged with the full clip's (`stica_jax.losses.classification_loss`,
weight `supervised.crop_loss_weight`). "Medium" is the pretraining's 6×6 crop: beside the full
7×7 map (the largest view) the official code has exactly two crop sizes, 6×6 and 4×4 (spec §5).

Needs: what `supervised_k400.py` needs, plus the four crops' passes through pooling and `fc`
(step time and memory not measured).
"""

import ml_collections

from configs import supervised_k400


def get_config() -> ml_collections.ConfigDict:
    config = supervised_k400.get_config()
    c = config.crops
    c.enabled = True  # Table 8 row "Fm-Crop ✓" (seed §7.3)
    c.space_large, c.n_space_large = 6, 2  # "2 medium" space crops, 6×6 of 7×7 (seed §7.3, §6.1.1)
    c.space_small, c.n_space_small = 4, 2  # "2 small" space crops, 4×4 (seed §7.3, §6.1.1)
    c.n_time_large, c.n_time_small = (
        0,
        0,
    )  # "latent space crops" only: no temporal crops (seed §7.3)
    return config
