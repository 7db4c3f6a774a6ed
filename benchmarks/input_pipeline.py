"""Clips/s per CPU core of the SOTA pretraining input, against decoding mp4 on the fly.

  python -m benchmarks.input_pipeline [--num_videos=6] [--clips=60] [--work_dir=/tmp/stica_bench]

Everything runs pinned to ONE CPU core (so clips/s is clips/s/core):
  1. makes `num_videos` 10-s 340×256 H.264/AAC (48 kHz stereo) mp4 files of moving texture and
     prepares them with the Kinetics-400 builder (30 fps, short side 128, JPEG; 24 kHz mono);
  2. pipeline: `make_dataset(..., "pretrain")` with the SOTA config (two augmented 60-frame 112×112
     views + a 257×199 log-mel of 2 s);
  3. baseline: the same outputs from the same augmentation and spectrogram code, but each clip
     decoded straight from the mp4 with PyAV (seek, decode 60 frames, resize to short side
     128, decode + resample the audio), what the official PyTorch code does;
  4. bound: JPEG decoding alone of the 60 sampled frames of the prepared records;
  timed in alternating turns (see `alternating_clips_per_second`), plus a profile of the
  pipeline's stages and of the augmentation's steps. Ends with the lines `pipeline: X clips/s/core`,
  `baseline: Y clips/s/core`, `ratio: Z`.
"""

import argparse
import os
import time

CORE = sorted(os.sched_getaffinity(0))[-1]
os.sched_setaffinity(0, {CORE})  # Before TensorFlow starts its thread pools.

import av  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from data_pipeline import augment, pipeline, prepare, stages  # noqa: E402
from data_pipeline.datasets import load_builder  # noqa: E402
from data_pipeline.input_config import InputConfig  # noqa: E402
from data_pipeline.media_decode import resized_shape, write_test_media  # noqa: E402
from data_pipeline.records import parse, split_records  # noqa: E402
from data_pipeline.tensorflow_cpu import tf  # noqa: E402

SOTA = InputConfig(dataset="stica_kinetics400", prefetch_batches=2)


def make_videos(manual_dir: str, num_videos: int) -> list[str]:
    """10-s 340×256 30-fps H.264 + 48-kHz stereo AAC files of a drifting texture with noise."""
    os.makedirs(manual_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, paths = [], []
    for index in range(num_videos):
        stem = f"video{index:05d}_000000_000010"
        path = os.path.join(manual_dir, stem + ".mp4")
        coarse = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
        texture = np.asarray(Image.fromarray(coarse).resize((700, 520), Image.BICUBIC))
        dy, dx = rng.uniform(-3, 3, 2)
        frames = np.empty((300, 256, 340, 3), np.uint8)
        for t in range(300):
            y, x = int(130 + dy * t / 3) % 260, int(180 + dx * t / 3) % 360
            noise = rng.integers(-12, 12, (256, 340, 1))
            frames[t] = np.clip(texture[y : y + 256, x : x + 340].astype(np.int16) + noise, 0, 255)
        seconds = np.arange(480_000) / 48_000
        audio = 0.3 * np.sin(2 * np.pi * (220 + 50 * index) * seconds) + 0.05 * rng.standard_normal(
            480_000
        )
        if not os.path.exists(path):
            write_test_media(
                path,
                frames=frames,
                fps=30,
                audio=np.stack([audio, audio], 1),
                sample_rate=48_000,
                audio_layout="stereo",
            )
        rows.append(f"class{index % 3},video{index:05d},0,10,train")
        paths.append(path)
    with open(os.path.join(manual_dir, "train.csv"), "w") as file:
        file.write("label,youtube_id,time_start,time_end,split\n" + "\n".join(rows) + "\n")
    return paths


def alternating_clips_per_second(
    factories: dict, num_clips: int, batch_size: int, rounds: int = 2
) -> dict[str, float]:
    """Clips/s of each iterator factory, measured in turns (A B C A B C ...), `num_clips` in all.

    A neighbour's load that comes and goes during the run then weighs on every measurement alike,
    so their ratio stays comparable. Each turn makes a fresh iterator (warmed up untimed) and drops
    it after, so no iterator prefetches in the background while another one is timed.
    """
    steps = max(1, num_clips // (batch_size * rounds))
    seconds = dict.fromkeys(factories, 0.0)
    for turn in range(rounds):
        for name, make in factories.items():
            batches = make(turn)
            next(batches)  # warm-up: graph tracing, XLA compilation, first reads
            start = time.perf_counter()
            for _ in range(steps):
                next(batches)
            seconds[name] += time.perf_counter() - start
            del batches
    return {name: rounds * steps * batch_size / seconds[name] for name in factories}


def decode_clip_from_mp4(
    path: str, start_seconds: float, config: InputConfig
) -> tuple[np.ndarray, np.ndarray]:
    """What the official loader does per clip: seek, decode `num_frames` frames + the audio."""
    with av.open(path) as container:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        height, width = resized_shape(video.codec_context.height, video.codec_context.width, 128)
        container.seek(int(start_seconds / video.time_base), stream=video, backward=True)
        frames = []
        for frame in container.decode(video):
            if frame.time < start_seconds - 1e-3:
                continue
            frames.append(
                frame.reformat(
                    width=width, height=height, format="rgb24", interpolation="AREA"
                ).to_ndarray()
            )
            if len(frames) == config.num_frames:
                break
        audio_stream = container.streams.audio[0]
        container.seek(
            int(start_seconds / audio_stream.time_base), stream=audio_stream, backward=True
        )
        resampler = av.AudioResampler(format="s16", layout="mono", rate=config.sample_rate)
        chunks, first = [], None
        for frame in container.decode(audio_stream):
            first = frame.time if first is None else first
            chunks.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(frame))
            if sum(len(c) for c in chunks) >= config.audio_samples + config.sample_rate // 10:
                break
        audio = np.concatenate(chunks)
        offset = max(0, round((start_seconds - first) * config.sample_rate))
        return np.stack(frames), audio[offset : offset + config.audio_samples]


def baseline_batches(paths: list[str], config: InputConfig, batch_size: int, seed: int = 0):
    """The same outputs as the pipeline (same augmentation and spectrogram), PyAV on the fly."""
    rng = np.random.default_rng(seed)
    augment_config = config.augment_config()

    def clips():
        while True:
            path = paths[rng.integers(len(paths))]
            start = rng.integers(0, 300 - config.num_frames) / 30
            frames, audio = decode_clip_from_mp4(path, start, config)
            yield frames, audio, rng.integers(0, 2**31, 2)

    def process(frames, audio, seed):
        seeds = tf.random.experimental.stateless_split(seed, 3)
        waveform = tf.cast(audio, tf.float32) / 32768.0
        volume = tf.random.stateless_uniform([], seeds[2], 0.9, 1.1)
        return {
            "video1": augment.augment_clip(frames, seeds[0], augment_config),
            "video2": augment.augment_clip(frames, seeds[1], augment_config),
            "audio": stages.spectrogram(waveform * volume, config),
        }

    signature = (
        tf.TensorSpec([None, None, None, 3], tf.uint8),
        tf.TensorSpec([None], tf.int16),
        tf.TensorSpec([2], tf.int64),
    )
    dataset = tf.data.Dataset.from_generator(clips, output_signature=signature)
    return iter(dataset.map(process).batch(batch_size).prefetch(2).as_numpy_iterator())


def jpeg_only_batches(data_dir: str, config: InputConfig, batch_size: int):
    """The bound: read records and decode the 60 sampled JPEG frames, nothing else."""
    builder = load_builder(config.dataset, data_dir)
    records = split_records(builder, "train", config, 0, 1)
    from data_pipeline import record_stream

    def decode(record):
        example = parse(builder, record)
        indices = stages.clip_frame_indices(tf.constant(100), tf.shape(example["video"])[0], config)
        return stages.decode_frames(example["video"], indices)

    stream = record_stream.training_records(
        records, seed=0, process_index=0, group_size=config.group_size
    )
    return iter(
        stream.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(2)
        .as_numpy_iterator()
    )


def stage_profile(data_dir: str, config: InputConfig, repeats: int = 20) -> dict[str, float]:
    """Milliseconds per clip of each stage (and of the augmentation's steps, per view), as compiled
    functions on one parsed record."""
    builder = load_builder(config.dataset, data_dir)
    file_name = builder.info.splits["train"].file_instructions[0].filename
    example = parse(builder, next(iter(tf.data.TFRecordDataset(file_name))))
    indices = stages.clip_frame_indices(tf.constant(100), tf.shape(example["video"])[0], config)
    frames = stages.decode_frames(example["video"], indices)
    augment_config = config.augment_config()
    resized = augment.random_resized_crop(frames, tf.constant([1, 2], tf.int64), augment_config)
    matrix, offset, no = tf.eye(3) / 255, tf.zeros([config.num_frames, 3]), tf.constant(False)
    radius = augment_config.blur_kernel_size // 2
    padded = augment._colour_map(resized, matrix, offset, no, 0.45, 0.225, radius)
    waveform = stages.audio_window(
        example["audio"], tf.constant(100 / 30), config.audio_samples, config.sample_rate
    )
    functions = {
        "parse record": tf.function(
            lambda: parse(builder, next(iter(tf.data.TFRecordDataset(file_name))))["label"]
        ),
        "JPEG-decode 60 frames": tf.function(
            lambda: stages.decode_frames(example["video"], indices)
        ),
        # A fresh seed per call: the coins (flip, jitter, grayscale, blur) vary as in training.
        "augment one view (mean over seeds)": tf.function(
            lambda: augment.augment_clip(
                frames, tf.random.uniform([2], maxval=2**31, dtype=tf.int64), augment_config
            )
        ),
        "  view step: crop + bilinear resize": tf.function(
            lambda: augment.random_resized_crop(
                frames, tf.random.uniform([2], maxval=2**31, dtype=tf.int64), augment_config
            )
        ),
        "  view step: frame means (p 0.8)": tf.function(lambda: augment._frame_means(resized)),
        "  view step: flip+colour+clip+normalise pass": tf.function(
            lambda: augment._colour_map(resized, matrix, offset, no, 0.45, 0.225, 0)
        ),
        "  view step: same pass, reflect-padded (p 0.5)": tf.function(
            lambda: augment._colour_map(resized, matrix, offset, no, 0.45, 0.225, radius)
        ),
        "  view step: blur, 2 passes (p 0.5)": tf.function(
            lambda: augment._blur_padded(padded, tf.constant(1.0), augment_config.blur_kernel_size)
        ),
        "log-mel 2 s": tf.function(lambda: stages.spectrogram(waveform, config)),
    }
    timings = {}
    for name, function in functions.items():
        for _ in range(5):  # tracing, and XLA compiling both branches of the view's conditionals
            function()
        start = time.perf_counter()
        for _ in range(repeats):
            function()
        timings[name] = 1000 * (time.perf_counter() - start) / repeats
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num_videos", type=int, default=6)
    parser.add_argument("--clips", type=int, default=48, help="clips timed per measurement")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--work_dir", default="/tmp/stica_input_benchmark")
    args = parser.parse_args()
    manual_dir, data_dir = (
        os.path.join(args.work_dir, "manual"),
        os.path.join(args.work_dir, "data"),
    )
    paths = make_videos(manual_dir, args.num_videos)
    prepare.prepare("kinetics400", manual_dir=manual_dir, data_dir=data_dir, num_workers=1)
    config = InputConfig.from_any({**SOTA.__dict__, "chunk_size": 1, "group_size": 4})
    print(f"Pinned to CPU core {CORE}; {args.num_videos} videos of 10 s, 340x256 H.264/AAC.")

    profile = stage_profile(data_dir, config)
    for name, milliseconds in profile.items():
        print(f"  stage {name}: {milliseconds:.1f} ms")
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    for _ in range(args.clips // 2):
        decode_clip_from_mp4(
            paths[rng.integers(len(paths))], rng.integers(0, 300 - config.num_frames) / 30, config
        )
    print(
        f"PyAV-only decode (baseline's decode stage): {(args.clips // 2) / (time.perf_counter() - start):.1f} clips/s/core"
    )
    rates = alternating_clips_per_second(
        {
            "bound": lambda turn: jpeg_only_batches(data_dir, config, args.batch_size),
            "pipeline": lambda turn: pipeline.make_dataset(
                config,
                "pretrain",
                split="train",
                data_dir=data_dir,
                batch_size_per_host=args.batch_size,
                seed=turn,
                process_index=0,
                process_count=1,
            ),
            "baseline": lambda turn: baseline_batches(paths, config, args.batch_size, seed=turn),
        },
        args.clips,
        args.batch_size,
    )
    ours, baseline = rates["pipeline"], rates["baseline"]
    print(f"JPEG-decode-only bound: {rates['bound']:.1f} clips/s/core")
    print(f"pipeline: {ours:.2f} clips/s/core")
    print(f"baseline: {baseline:.2f} clips/s/core")
    print(f"ratio: {ours / baseline:.2f}")


if __name__ == "__main__":
    main()
