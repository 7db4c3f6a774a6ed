"""Ablation: gradients through the all-gathered keys (spec §6); the official code detaches them."""

from configs import sota


def get_config():
    config = sota.get_config()
    config.loss.detach_keys = False
    return config
