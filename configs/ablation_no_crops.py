"""Ablation: no feature crops — the cross-modal NCE alone."""

from configs import sota


def get_config():
    config = sota.get_config()
    config.crops.enabled = False
    return config
