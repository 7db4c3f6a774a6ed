"""Linear probe on UCF-101, folds 1-3 (spec §10, seed Table 7): `linear_hmdb51.py` on
`stica_ucf101/fold{k}`.

`python -m stica_jax.evaluate --config=configs/eval/linear_ucf101.py
--config.init.workdir=PRETRAIN_DIR --workdir=EVAL_DIR`.

Needs: what `linear_hmdb51.py` needs, with a prepared UCF-101 (not measured).
"""

import ml_collections

from configs.eval import linear_hmdb51


def get_config() -> ml_collections.ConfigDict:
    config = linear_hmdb51.get_config()
    config.dataset = "stica_ucf101"  # fold k = stica_ucf101/fold{k}
    return config
