"""Ablation: average temporal pooling instead of the transformer (seed §6.1).

Needs: what `sota.py` needs, or slightly less (no transformer; step time and memory not
measured).
"""

from configs import sota


def get_config():
    config = sota.get_config()
    config.model.pooling = "avg"
    return config
