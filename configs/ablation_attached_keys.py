"""Ablation: gradients through the all-gathered keys (spec §6); the official code detaches them.

Needs: what `sota.py` needs; the backward also runs through the gathered keys (step time and
memory not measured).
"""

from configs import sota


def get_config():
    config = sota.get_config()
    config.loss.detach_keys = False
    return config
