"""Fine-tuning on UCF-101, folds 1-3 (spec §10): `finetune_hmdb51.py`'s recipe on
`stica_ucf101/fold{k}` (run_finetune.sh runs both datasets with the same settings).

`python -m stica_jax.evaluate --config=configs/eval/finetune_ucf101.py
--config.init.workdir=PRETRAIN_DIR --workdir=EVAL_DIR`.
"""

import ml_collections

from configs.eval import finetune_hmdb51


def get_config() -> ml_collections.ConfigDict:
    config = finetune_hmdb51.get_config()
    config.dataset = "stica_ucf101"  # fold k = stica_ucf101/fold{k} (ucfTrainTestlist 0k)
    return config
