"""Ablation: 1-s clips (30 frames, T'=4) and 1-s audio (257×99); time crops 2×3 + 1×2 (seed §6.1.1).

Needs: what `sota.py` needs, or less: half the frames and half the audio per clip (step time
and memory not measured).
"""

from configs import sota


def get_config():
    config = sota.get_config()
    config.input.num_frames = 30
    config.input.audio_seconds = 1.0
    config.crops.time_large = 3  # 3T'/4 for T'=4 (spec §5)
    config.crops.time_small = 2  # T'/2 for T'=4 (spec §5)
    return config
