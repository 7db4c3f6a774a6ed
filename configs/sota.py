"""STiCA state-of-the-art pretraining: R(2+1)D-18 + transformer pooling, ResNet-9 audio,
60 frames at 112², 2-s audio, feature crops space 2×6²+4×4² & time 2×6+1×4 (T'=8).

Every number cites its source: "seed" is the paper appendix (shared/seed), "spec §N" is
shared/STICA_SPEC.md, "official" the PyTorch GDT/STiCA code.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    config.model = ml_collections.ConfigDict()
    config.model.video_widths = (64, 128, 256, 512)  # R(2+1)D-18 stages (spec §1)
    config.model.video_depths = (2, 2, 2, 2)  # 2 BasicBlocks per stage (spec §1)
    config.model.audio_widths = (64, 128, 256, 512)  # ResNet-9 = ResNet BasicBlock [1,1,1,1] (spec §2)
    config.model.pooling = "transformer"  # SOTA uses transformer temporal pooling (seed §6.1.1)
    config.model.transformer = ml_collections.ConfigDict()
    config.model.transformer.num_layers = 2  # "2-layer transformer" (seed §6.2)
    config.model.transformer.num_heads = 4  # "4 attention heads" (seed §6.2)
    config.model.transformer.mlp_width = 2048  # FFN 2048 (spec §3)
    config.model.transformer.max_len = 64  # learned positions (spec §3)
    config.model.head_hidden = 512  # "intermediate size of 512" (seed §6.1)
    config.model.embed_dim = 256  # "256-D embedding vectors" (seed §6.1)
    config.model.head_dropout = 0.3  # head dropout (spec §4)
    config.model.dtype = "bfloat16"  # bf16 compute, f32 params (spec §8)

    config.crops = ml_collections.ConfigDict()
    config.crops.enabled = True  # feature crops on (seed §6.1.1)
    config.crops.space_large = 6  # 6×6 of the 7×7 map (seed §6.1.1: 2×6²)
    config.crops.n_space_large = 2
    config.crops.space_small = 4  # 4×4 (seed §6.1.1: 4×4²)
    config.crops.n_space_small = 4
    config.crops.time_large = 6  # 3T'/4 with T'=8 for 60 frames (spec §5)
    config.crops.n_time_large = 2  # seed §6.1.1: time 2×3 (for T'=4)
    config.crops.time_small = 4  # T'/2 with T'=8 (spec §5)
    config.crops.n_time_small = 1  # seed §6.1.1: 1×2 (for T'=4)

    config.loss = ml_collections.ConfigDict()
    config.loss.cross_modal_weight = 0.5  # official cross_modal_alpha (spec §6)
    config.loss.av_temperature = 0.1  # cross-modal τ (seed §6.1)
    config.loss.crop_temperature = 0.5  # within-modal τ (seed §6.1)
    config.loss.detach_keys = False  # official detaches keys; spec §6 lets gradients flow

    config.input = ml_collections.ConfigDict()
    config.input.num_frames = 60  # 2-s clips at 30 fps (seed §6.1.1)
    config.input.fps = 30  # Kinetics at 30 fps (seed §6.1)
    config.input.crop_size = 112  # 112×112 (seed §6.1)
    config.input.audio_seconds = 2.0  # same duration as the clip (spec §7)
    config.input.sample_rate = 24000  # mono 24 kHz (spec §7)
    config.input.num_mel_bins = 257  # "257×199" (seed §6.1, spec §7)
    config.input.window_size = 480  # 20 ms (spec §7)
    config.input.hop_size = 240  # 10 ms (spec §7)
    config.input.fft_size = 1024  # spec §7
    return config
