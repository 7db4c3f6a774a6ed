"""Supervised Kinetics-400 training of R(2+1)D-18 + transformer pooling, no feature crops
(seed §7.3, Table 8, "Fm-Crop ×": 67.6 HMDB-51 top-1 after fine-tuning).

Everything not overridden is `sota.py`'s: the same backbone, transformer pooling, 60 frames at
112², clip sampling and per-view augmentation (one view instead of two, no audio), SGD and the
warmup schedule. The seed gives no optimisation recipe for this experiment; where a number
below is ours, its comment says "decision".

Needs: the accelerators `sota.py` needs, and a prepared Kinetics-400 with its validation split;
one view and no audio per clip, so less per clip than pretraining (step time and memory not
measured).
"""

import ml_collections

from configs import sota


def get_config() -> ml_collections.ConfigDict:
    config = sota.get_config()
    config.mode = "supervised"  # cross-entropy on the label (seed §7.3)
    config.crops.enabled = False  # Table 8 row "Fm-Crop ×" (seed §7.3)

    config.supervised = ml_collections.ConfigDict()
    config.supervised.num_classes = 400  # Kinetics-400 (seed §7.3); 0 = read from the dataset
    config.supervised.dropout = 0.0  # decision: torchvision's r2plus1d_18 has none before fc
    config.supervised.crop_loss_weight = 0.5  # decision: as pretraining's 0.5 split (spec §6)

    config.optimizer.decay = "cosine"  # decision: decay for classification (spec §8: optional)

    config.eval.method = "classifier"  # top-1 of the classifier itself (spec §10 protocol)
    config.eval.dataset = "stica_kinetics400"  # evaluate on Kinetics-400 itself (decision)
    config.eval.test_split = (
        "validation"  # the split K-400 results are usually reported on (decision)
    )
    config.eval.clips = 10  # 10 clips × 3 crops, logits averaged (spec §10)
    config.eval.crops = 3  # spec §10
    config.eval.modalities = ("video",)  # a video classifier
    return config
