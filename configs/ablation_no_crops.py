"""Ablation: no feature crops — the cross-modal NCE alone.

Needs: what `sota.py` needs, or less (no crop passes through the pooling and heads; step time and
memory not measured).
"""

from configs import sota


def get_config():
    config = sota.get_config()
    config.crops.enabled = False
    return config
