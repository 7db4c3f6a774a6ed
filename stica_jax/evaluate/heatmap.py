"""Audio-visual heatmaps (seed §7.4, spec §10): where in the picture the model hears the sound.

`write_heatmaps` (the command `python -m stica_jax.heatmap --config.init.workdir=DIR
--video=A.mp4 --video=B.mp4 --out=DIR`) writes one PNG per video, the clip's middle frame with
the heatmap overlaid, and an `index.html` that shows them side by side.

What the heat is. The seed removes the spatial pooling and takes "the dot-product of the audio
feature vector with the video feature-map" (as in Arandjelović & Zisserman, "Objects that
Sound"). In STiCA, audio and video meet only in the 256-d embedding space of the heads, where
the cross-modal NCE compares them; the backbone maps (512-d) of the two towers are not aligned.
So each spatial position (h, w) of the visual map `[T', H', W', C]` goes through what the full
map goes through, without the spatial mean: its `[T', 1, 1, C]` column is a 1 × 1 feature crop,
temporally pooled (the model's transformer or average) and projected by the video head to a
unit embedding z_v(h, w). The heat is z_v(h, w) · z_a, the cosine similarity the loss was
trained on, with z_a the clip audio's unit embedding. Feature crops (spec §5) trained this
path on 6 × 6 and 4 × 4 crops; a 1 × 1 crop is the smallest of the same family.

Input. The file goes through the project's decode path (`data_pipeline.media_decode`: 30-fps
JPEG frames at a fixed short side, mono int16 audio), then the evaluation's sampling and
normalisation (`data_pipeline.stages`): one clip of the model's `num_frames × frame_stride`,
centred in the video, its audio window from the clip's start with the model's front end
(`config.input` of the pretraining workdir). Unlike the evaluation's 112² crops, the whole
frame is used, resized to the evaluation's short side (`input.eval_short_side`, or
`--config.short_side`), so the heatmap covers the picture at the scale the model was evaluated
at. The network is convolutional and the map is as large as the frame allows.
"""

import dataclasses
import functools
import html
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from PIL import Image

from data_pipeline import atomic_file, media_decode
from data_pipeline.errors import UserError
from stica_jax.evaluate import init as init_lib


class HeatmapError(UserError, ValueError):
    """A user error (a missing or unusable video, a model without both towers): one line."""


def default_config() -> ml_collections.ConfigDict:
    """The settings of `python -m stica_jax.heatmap`; every field can be set as
    `--config.<field>=…`."""
    config = ml_collections.ConfigDict()
    # The pretrained model: a stica_jax pretraining workdir, at its latest (-1) or a given step.
    config.init = ml_collections.ConfigDict(dict(workdir="", step=-1))
    config.short_side = 0  # network input short side; 0 = the model's input.eval_short_side
    config.decode_short_side = 128  # stored frames' short side (data_pipeline's default, 128)
    config.alpha = 0.5  # heatmap opacity over the frame
    # The pictures' least height in pixels: a smaller frame is enlarged (Lanczos) for viewing, the
    # heat upsampled to the enlarged frame. Only the picture changes, not the heat.
    config.png_height = 256
    return config


@dataclasses.dataclass
class ClipInputs:
    """One clip ready for the model.

    Attributes:
      video: float32 `[1, T, H, W, 3]`, normalised like evaluation.
      audio: float32 `[1, F, T_spec, 1]`, the model's front end.
      frame: uint8 `[H0, W0, 3]`, the clip's middle frame as decoded.
      start: the clip's first frame (index at the model's fps).
      middle: the index of `frame`.
    """

    video: np.ndarray
    audio: np.ndarray
    frame: np.ndarray
    start: int
    middle: int


def decode_video(path: str, input_config: Any, decode_short_side: int = 128):
    """(JPEG frames at the model's fps, int16 mono audio) of a media file, or `HeatmapError`."""
    if not os.path.isfile(path):
        raise HeatmapError(f"video not found: {path}")
    settings = media_decode.DecodeSettings(
        fps=float(input_config["fps"]),
        short_side=decode_short_side,
        sample_rate=int(input_config["sample_rate"]),
        video=True,
        audio="required",
        min_seconds=0.0,
    )
    try:
        decoded = media_decode.decode_media(path, settings)
    except media_decode.MediaSkipped as error:
        raise HeatmapError(f"cannot use {path}: {error.reason.replace('_', ' ')}") from None
    return decoded.jpeg_frames, decoded.audio


def clip_inputs(
    jpeg_frames: Sequence[bytes], audio: np.ndarray, input_config: Any, short_side: int = 0
) -> ClipInputs:
    """The centred clip of a decoded video, sampled and normalised as evaluation does.

    Args:
      jpeg_frames: the video's frames at `input_config.fps` (what preparation stores).
      audio: int16 `[N]` mono at `input_config.sample_rate`, sample 0 at frame 0.
      input_config: the model's input settings (an `InputConfig` or a config holding its fields).
      short_side: the network's input short side; 0 = `input_config.eval_short_side`.
    """
    # Late: these load TensorFlow. `stica_jax.heatmap` imports this module at its top, before
    # `cli.run` quiets the console and `data_pipeline.tensorflow_cpu` hides the GPUs from TF.
    from data_pipeline import stages
    from data_pipeline.augment import normalize
    from data_pipeline.input_config import InputConfig
    from data_pipeline.tensorflow_cpu import tf

    config = InputConfig.from_any(input_config)
    short_side = short_side or config.eval_short_side
    jpegs = tf.constant(list(jpeg_frames))
    n = len(jpeg_frames)
    span = stages.clip_span(config)
    start = max((n - span) // 2, 0)
    frames = stages.decode_frames(jpegs, stages.clip_frame_indices(start, n, config))
    height, width = frames.shape[1:3]
    scale = short_side / min(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    video = tf.image.resize(frames, size, method="bilinear")  # as the evaluation's resize
    video = normalize(video / 255.0, mean=config.mean, std=config.std)
    waveform = stages.audio_window(
        tf.constant(audio, tf.int16),
        tf.constant(start / config.fps, tf.float32),
        config.audio_samples,
        config.sample_rate,
    )
    middle = min(start + span // 2, n - 1)
    frame = tf.io.decode_jpeg(jpegs[middle], channels=3)
    return ClipInputs(
        video=video.numpy()[None],
        audio=stages.spectrogram(waveform, config).numpy()[None],
        frame=frame.numpy(),
        start=start,
        middle=middle,
    )


@functools.lru_cache(maxsize=8)
def make_heatmap_fn(graphdef: nnx.GraphDef) -> Callable:
    """Jitted `(params, batch_stats, video [1, T, H, W, 3], audio [1, F, T_a, 1]) → [H', W']`:
    each map position's embedding (a 1 × 1 feature crop through temporal pooling and the video
    head) dotted with the audio embedding, both unit vectors (inference mode). One compiled
    function per model structure (cached), recompiled only for a new input size."""

    def heat(params, batch_stats, video, audio):
        model = nnx.merge(graphdef, params, batch_stats, copy=True)
        model.eval()
        fmap = model.video_map(video)[0]  # [T', H', W', C]
        t, h, w, c = fmap.shape
        cells = jnp.transpose(fmap, (1, 2, 0, 3)).reshape(h * w, t, 1, 1, c)
        z_video = model.embed_video_map(cells, None)  # [H' W', E]
        z_audio = model.embed_audio(audio, None)[0]  # [E]
        return (z_video @ z_audio).reshape(h, w)

    return jax.jit(heat)


def heatmap(model: nnx.Module, inputs: ClipInputs) -> np.ndarray:
    """float `[H', W']`: the heat of `inputs` under `model` (a STiCA)."""
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return np.asarray(make_heatmap_fn(graphdef)(params, batch_stats, inputs.video, inputs.audio))


def upsample(heat: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear `[H', W']` → `[height, width]`; cell (i, j) is centred on the frame region it
    covers (half-pixel centres, as the map covers the whole frame)."""
    return np.asarray(jax.image.resize(jnp.asarray(heat, jnp.float32), (height, width), "linear"))


# A perceptual blue → cyan → yellow → red ramp ("jet"-like), linearly interpolated.
_RAMP = np.array(
    [[0, 0, 96], [0, 64, 255], [0, 224, 255], [255, 255, 0], [255, 96, 0], [160, 0, 0]],
    np.float32,
)


def colorize(values: np.ndarray) -> np.ndarray:
    """float `[...]` in [0, 1] → uint8 `[..., 3]` colours of the ramp."""
    position = np.clip(values, 0, 1) * (len(_RAMP) - 1)
    low = np.minimum(np.floor(position).astype(int), len(_RAMP) - 2)
    fraction = (position - low)[..., None]
    return np.round(_RAMP[low] * (1 - fraction) + _RAMP[low + 1] * fraction).astype(np.uint8)


def overlay(frame: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """uint8 `[H0, W0, 3]`: `frame` with `heat` (any size) upsampled, min-max scaled, coloured."""
    up = upsample(heat, *frame.shape[:2])
    span = float(up.max() - up.min())
    scaled = (up - up.min()) / span if span > 0 else np.zeros_like(up)
    mixed = (1 - alpha) * frame.astype(np.float32) + alpha * colorize(scaled).astype(np.float32)
    return np.round(mixed).astype(np.uint8)


def enlarged(frame: np.ndarray, min_height: int) -> np.ndarray:
    """uint8 `[H, W, 3]` → at least `min_height` rows (Lanczos, aspect kept) for viewing."""
    height, width = frame.shape[:2]
    if height >= min_height:
        return frame
    size = (max(1, round(width * min_height / height)), min_height)
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS))


def colour_scale_css() -> str:
    """The ramp of `colorize` as a CSS gradient: the page's colour scale is the pictures'."""
    stops = ", ".join(
        f"rgb({r:.0f}, {g:.0f}, {b:.0f}) {100 * i / (len(_RAMP) - 1):.0f}%"
        for i, (r, g, b) in enumerate(_RAMP)
    )
    return f"linear-gradient(to right, {stops})"


def write_index(out_dir: str, entries: Sequence[dict[str, Any]]) -> str:
    """`index.html`: the PNGs side by side, each with its video, its colour scale labelled with
    the clip's heat range, and the frame shown."""
    figures = "\n".join(
        f'<figure><img src="{html.escape(e["png"])}" alt="{html.escape(e["video"])}">'
        f'<div class="scale"><span>{e["min"]:.3f}</span><span class="bar"></span>'
        f"<span>{e['max']:.3f}</span></div>"
        f"<figcaption>{html.escape(os.path.basename(e['video']))}<br>"
        f"heat {e['min']:.3f} … {e['max']:.3f} (cosine), frame {e['frame']}</figcaption></figure>"
        for e in entries
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>STiCA audio-visual heatmaps</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
main {{ display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }}
figure {{ margin: 0; }} img {{ height: 256px; image-rendering: auto; display: block; }}
figcaption {{ font-size: 0.85em; max-width: 24em; word-break: break-all; }}
.scale {{ display: flex; align-items: center; gap: 0.4em; font-size: 0.8em; margin: 0.3em 0; }}
.bar {{ flex: 1; height: 0.9em; min-width: 8em; background: {colour_scale_css()}; }}
</style></head><body>
<h1>Audio-visual heatmaps</h1>
<p>Each picture is a clip's middle frame. The colour is the cosine similarity between the clip's
audio embedding and the embedding of each position of the visual map, scaled per clip: the bar
under each picture runs from that clip's lowest heat (left, dark blue) to its highest (right,
dark red).</p>
<div class="scale"><span>low</span><span class="bar"></span><span>high</span></div>
<main>
{figures}
</main></body></html>
"""
    path = os.path.join(out_dir, "index.html")
    atomic_file.write_text(path, page)
    return path


def _png_names(videos: Sequence[str]) -> list[str]:
    names, seen = [], set()
    for video in videos:
        stem = os.path.splitext(os.path.basename(video))[0] or "video"
        name, k = f"{stem}.png", 1
        while name in seen:
            k += 1
            name = f"{stem}_{k}.png"
        seen.add(name)
        names.append(name)
    return names


def write_heatmaps(
    model: nnx.Module,
    input_config: Any,
    videos: Sequence[str],
    out_dir: str,
    *,
    short_side: int = 0,
    decode_short_side: int = 128,
    alpha: float = 0.5,
    png_height: int = 256,
) -> list[dict[str, Any]]:
    """One PNG per video in `out_dir` (at least `png_height` pixels tall) and `index.html`;
    returns the entries (png, heat range).

    Every video is decoded before any heatmap is computed, so a bad file fails fast.
    """
    decoded = [decode_video(v, input_config, decode_short_side) for v in videos]
    os.makedirs(out_dir, exist_ok=True)
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    heat_fn = make_heatmap_fn(graphdef)
    entries = []
    for video, (jpegs, audio), name in zip(videos, decoded, _png_names(videos)):
        inputs = clip_inputs(jpegs, audio, input_config, short_side)
        heat = np.asarray(heat_fn(params, batch_stats, inputs.video, inputs.audio))
        picture = overlay(enlarged(inputs.frame, png_height), heat, alpha)
        Image.fromarray(picture).save(os.path.join(out_dir, name))
        entries.append(
            dict(
                video=video,
                png=name,
                min=float(heat.min()),
                max=float(heat.max()),
                frame=inputs.middle,
            )
        )
    write_index(out_dir, entries)
    return entries


def load_model(config: ml_collections.ConfigDict) -> tuple[nnx.Module, dict[str, Any]]:
    """(the pretrained STiCA, its input settings) from `config.init.workdir`
    (`stica_jax.evaluate.init`, the loader of every protocol)."""
    workdir = config.init.workdir
    if not workdir:
        raise HeatmapError("give the pretrained model: --config.init.workdir=DIR")
    step = None if config.init.step < 0 else config.init.step
    try:
        pretrain_config, model, _ = init_lib.restore_workdir(workdir, step)
    except init_lib.InitError as error:
        raise HeatmapError(str(error)) from None
    if not hasattr(model, "embed_audio"):
        raise HeatmapError(
            f"{workdir} trained a {type(model).__name__}; heatmaps need a STiCA with both towers"
        )
    return model, pretrain_config.input.to_dict()


if __name__ == "__main__":  # the former spelling of `python -m stica_jax.heatmap`
    from stica_jax import cli, heatmap as command

    cli.run(command.main)
