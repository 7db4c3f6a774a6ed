"""The built-in demo: a slim STiCA pretrained on generated AV-digits, minutes on a laptop CPU.

Same method as `sota.py` (two augmented views, audio, feature crops, transformer pooling, the
NCE losses), with a slim network, small inputs and no head dropout (see below). It generates
AV-digits if absent, pretrains, and ends with a linear-probe table on held-out AV-digits (video
and audio features) for the trained model beside the same architecture at random init.

Needs: a CPU and no accelerator (float32). Measured on 2 CPU cores (benchmarks/RESULTS.md): the
465 steps run at about 1.6 steps/s (5 minutes); the README's first command, `pip install` and
generating AV-digits (400 MB on disk) included, takes about 9 minutes. Memory not measured.
"""

from configs import sota


def get_config():
    config = sota.get_config()
    m = config.model
    m.video_widths = (8, 16, 32, 64)
    m.video_depths = (1, 1, 1, 1)
    m.audio_widths = (8, 16, 32, 64)
    m.transformer.num_heads = 4
    m.transformer.mlp_width = 128
    m.head_hidden = 64
    m.embed_dim = 64
    # No head dropout: in a 64-wide head, dropout 0.3 is so much noise that the cross-modal loss
    # never leaves log B within the demo's steps (measured, docs/demo.md); spec §4's 0.3 is for 512.
    m.head_dropout = 0.0
    m.dtype = "float32"  # CPUs have no fast bf16

    i = config.input
    i.dataset = "av_digits"
    i.num_frames = 16
    i.frame_stride = 2  # 16 frames span 1 s of the 30-fps clip
    i.crop_size = 32  # map 2×2 × T'=2
    i.crop_scale = (0.6, 1.0)  # the digit fills most of the frame; small crops would cut it
    i.flip_prob = 0.0  # digits are not mirror-symmetric (a mirrored 5 reads as a 2)
    i.blur_kernel_size = 5
    i.audio_seconds = 1.0
    i.audio_frontend = "stica"  # tf.signal log-mel; "official" matters only for official weights
    i.num_mel_bins = 64
    i.eval_short_side = 32

    c = config.crops
    c.space_large, c.n_space_large, c.space_small, c.n_space_small = 1, 2, 0, 0
    c.time_large, c.n_time_large, c.time_small, c.n_time_small = 1, 2, 0, 0

    # The official crop pairing and detached keys, as sota.py. Measured with this config and the
    # earlier cosine schedule (558 steps, seed 0; linear-probe top-1 video / audio, random init
    # 48.0 / 61.3): official pairs + detached keys 68.7 / 76.7, all pairs + attached keys
    # 32.7 / 62.0 (below random init on video: it did not learn). docs/demo.md.
    config.loss.crop_pairs = "official"
    config.loss.detach_keys = True

    config.av_digits = {}  # AvDigitsSpec fields; {} = the default (1,500 train / 300 test clips)
    config.global_batch_size = 16
    config.num_epochs = 5  # 465 steps: the whole command fits in 10 minutes on 2 CPU cores
    # Constant after a short warmup, as sota.py (the official schedule). The cross-modal loss
    # sits at chance for the first 100-200 steps, a time that moves with the seed and with
    # rounding; a decaying rate made the result depend on that time (docs/demo.md).
    config.optimizer.base_lr = 0.1
    config.optimizer.warmup_start_lr = 0.01
    config.optimizer.warmup_epochs = 0.2
    config.optimizer.decay = "constant"
    # The cross-modal loss, stronger than sota.py's (docs/demo.md, "Why the cross-modal loss
    # differs from the SOTA config's"): temperature 0.2 instead of 0.1, weight 0.7 instead of 0.5.
    # At 0.1 the quickest way down from the loss of random 64-d embeddings is for every audio
    # embedding to become alike; in one run of six they stayed so and the demo learned nothing.
    config.loss.av_temperature = 0.2
    config.loss.cross_modal_weight = 0.7
    config.log_every_steps = 31
    config.checkpoint_every_steps = 200

    e = config.eval
    e.every_steps = 0  # only the final table
    e.dataset = "av_digits"
    e.modalities = ("video", "audio")
    e.batch_size = 64
    e.compare_random_init = True
    return config
