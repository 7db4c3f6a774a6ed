"""Ablation: average temporal pooling instead of the transformer (seed §6.1)."""

from configs import sota


def get_config():
    config = sota.get_config()
    config.model.pooling = "avg"
    return config
