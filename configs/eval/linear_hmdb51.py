"""Linear probe on HMDB-51, folds 1-3 (spec §10, seed Table 7): `finetune_hmdb51.py`'s data,
optimizer and schedule with only the linear head trained.

`python -m stica_jax.evaluate --config=configs/eval/linear_hmdb51.py
--config.init.workdir=PRETRAIN_DIR --workdir=EVAL_DIR`. The official code runs the fine-tuning
script with `--feature-extract True` (only the classifier's parameters are optimised, at the
head LR) but leaves BatchNorm in train mode; here the backbone is frozen and in inference mode
(spec §10).

Needs: what `finetune_hmdb51.py` needs, or less (no backbone gradients; not measured).
"""

import ml_collections

from configs.eval import finetune_hmdb51


def get_config() -> ml_collections.ConfigDict:
    config = finetune_hmdb51.get_config()
    config.protocol = "linear"
    return config
