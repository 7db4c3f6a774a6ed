"""STiCA state-of-the-art pretraining: R(2+1)D-18 + transformer pooling, ResNet-9 audio,
60 frames at 112², 2-s audio, feature crops space 2×6²+4×4² & time 2×6+1×4 (T'=8).

Needs: GPUs or TPUs with bfloat16, and a prepared Kinetics-400 (`python -m stica_jax.prepare
kinetics400`). The global batch of 512 is the paper's 8 clips per GPU on 64 GPUs; measured on
one H100 80GB with synthetic batches (benchmarks/RESULTS.md): 8 clips per device 95 ms per step
(84 clips/s), 15.4 GiB peak; 16 clips 183 ms (87 clips/s), 30.4 GiB; about 1.9 GiB more per
clip, so an 80 GB device should hold about 32 (not run) and fewer than 16 such devices need a
smaller `global_batch_size` (it must divide by the device count). At 8 clips per device on 64
devices, 100 epochs of Kinetics-400 are about 1.3 hours of step time if the step scaled
perfectly (estimated, not measured: BatchNorm and gradient collectives may cost 10-20 %). The
input pipeline reads 15-19 clips/s per CPU core, so about 5 cores per device.

Every number cites its source: "seed" is the paper appendix (shared/seed), "spec §N" is
shared/STICA_SPEC.md, "official" the PyTorch GDT/STiCA code.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    config.model = ml_collections.ConfigDict()
    config.model.video_widths = (64, 128, 256, 512)  # R(2+1)D-18 stages (spec §1)
    config.model.video_depths = (2, 2, 2, 2)  # 2 BasicBlocks per stage (spec §1)
    config.model.audio_widths = (
        64,
        128,
        256,
        512,
    )  # ResNet-9 = ResNet BasicBlock [1,1,1,1] (spec §2)
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
    # The one behaviour taken from the official code over the spec's earlier wording of eq. 7:
    # one large↔large pair (large crop 1 of each view) + small→large, 12 terms (spec §6).
    config.loss.crop_pairs = "official"
    config.loss.detach_keys = True  # official: every key detached; LR 0.64 was tuned so (spec §6)

    config.input = ml_collections.ConfigDict()
    config.input.dataset = "stica_kinetics400"  # Kinetics-400 train split (spec §9)
    config.input.num_frames = 60  # 2-s clips at 30 fps (seed §6.1.1)
    config.input.fps = 30  # Kinetics at 30 fps (seed §6.1)
    config.input.crop_size = 112  # 112×112 (seed §6.1)
    config.input.audio_seconds = 2.0  # same duration as the clip (spec §7)
    config.input.sample_rate = 24000  # mono 24 kHz (spec §7)
    # python_speech_features.logfbank as the official loader calls it, so official checkpoints
    # and ours read the same features (spec §7, official datasets/audio_utils.py).
    config.input.audio_frontend = "official"
    config.input.num_mel_bins = 257  # "257×199" (seed §6.1, spec §7)
    config.input.window_length = 480  # 20 ms (spec §7)
    config.input.hop_length = 240  # 10 ms (spec §7)
    config.input.fft_length = 1024  # spec §7
    config.input.volume_jitter = (0.9, 1.1)  # volume jitter (seed §6.1, spec §7)
    config.input.blur_kernel_size = 11  # Gaussian blur kernel (spec §7)
    config.input.num_parallel_calls = 0  # records decoded at once per host; 0 = one per core
    config.train_split = "train"
    config.input_shards = 0  # data shards; 0 = one per host (fix it to make runs host-count-free)

    config.mode = "pretrain"  # "pretrain" (STiCA) or "supervised" (seed Table 8)
    config.seed = 0
    config.data_dir = ""  # TFDS data dir; "" = TFDS's default (~/tensorflow_datasets)
    config.global_batch_size = 512  # 8 per GPU × 64 GPUs (seed §6.1)
    config.num_epochs = 100.0  # seed §6.1 (the official script ran 151)
    config.num_train_examples = 0  # 0 = read from the prepared dataset's metadata

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.base_lr = 0.64  # seed §6.1
    config.optimizer.warmup_start_lr = 0.01  # official start_warmup (spec §8)
    config.optimizer.warmup_epochs = 10.0  # seed §6.1
    config.optimizer.decay = "constant"  # official: constant after warmup; "cosine" optional
    config.optimizer.final_lr = 0.0  # cosine end value
    config.optimizer.momentum = 0.9  # seed §6.1
    config.optimizer.weight_decay = 1e-5  # coupled, like torch SGD (seed §6.1)

    config.log_every_steps = 50
    config.checkpoint_every_steps = 1000
    config.keep_checkpoints = 3
    # > 0: a `jax.profiler` trace of this many steps, from the step after the first (which
    # compiles), into <workdir>/profile (TensorBoard's profile tab). 0: no trace.
    config.profile_steps = 0

    # Performance options of the train step: the numbers they change and by how much are in
    # benchmarks/RESULTS.md, the tests in tests/test_layer_options.py.
    p = config.performance = ml_collections.ConfigDict()
    # BatchNorm statistics as E[x] and E[x²] in one pass and one collective, instead of two
    # passes (E[x], then E[(x - E[x])²]) and two. Off: E[x²] - E[x]² cancels when the mean
    # dwarfs the spread. Against NumPy float64 at mean/std = 1, 10, 100, 1000, the normalised
    # output is off by 7e-7, 4e-5, 4e-3, 0.26 in one pass and by 7e-7, 1e-6, 1e-5, 8e-5 (float32
    # rounding of the input) in two.
    p.bn_one_pass = False
    # "global": SyncBN, statistics over the global batch (the result does not depend on the
    # device count). "device": each device's shard alone, as an unsynchronised torch BatchNorm
    # per GPU (no collective; the result depends on the per-device batch).
    p.bn_sync = "global"
    # > 1: every convolution zero-pads its channels to a multiple of this (tensor-core widths)
    # inside the call; parameters and results are unchanged. 0: off.
    p.conv_channel_multiple = 0
    # One float32 all-reduce per parameter gradient (on), instead of one per use of the parameter
    # in the compute dtype (off: bfloat16 at SOTA, 7 uses of the pooling and head weights per
    # step). On 8 devices, one float32 sum moves 35 % fewer bytes (209,992 against 321,168 a
    # step of the tiny network) and is exact where the bfloat16 sums are 1e-3 off
    # (tests/test_layer_options.py); what PyTorch DDP does.
    p.sum_grads_once = True

    # Online evaluation while pretraining: a probe on frozen features of a labelled dataset.
    config.eval = ml_collections.ConfigDict()
    config.eval.every_steps = 5000  # 0 = only at the end
    config.eval.method = "linear_probe"  # "linear_probe", "knn" or "none"
    config.eval.dataset = "stica_ucf101/fold1"  # evaluated when prepared (skipped otherwise)
    config.eval.train_split = "train"
    config.eval.test_split = "test"
    config.eval.modalities = ("video",)  # UCF-101 is probed on video features
    config.eval.batch_size = 64  # global, clips per eval batch
    config.eval.clips = 1  # clips × crops per video for online eval (final protocol: 10 × 3)
    config.eval.crops = 1
    config.eval.audio_subclips = 1
    config.eval.compare_random_init = False  # also probe the initial model (the demo's table)
    return config
