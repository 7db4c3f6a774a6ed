"""Fine-tuning on UCF-101, folds 1-3 (spec §10): `finetune_hmdb51.py`'s recipe on
`stica_ucf101/fold{k}` (run_finetune.sh runs both datasets with the same settings).

`python -m stica_jax.evaluate --config=configs/eval/finetune_ucf101.py
--config.init.workdir=PRETRAIN_DIR --workdir=EVAL_DIR`.

Needs: what `finetune_hmdb51.py` needs, with a prepared UCF-101; about 2.7× HMDB-51's training
videos per fold (9,537 against 3,570 in fold 1), so about 2.7× its time (not measured).
"""

import ml_collections

from configs.eval import finetune_hmdb51


def get_config() -> ml_collections.ConfigDict:
    config = finetune_hmdb51.get_config()
    config.dataset = "stica_ucf101"  # fold k = stica_ucf101/fold{k} (ucfTrainTestlist 0k)
    return config
