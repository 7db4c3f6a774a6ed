"""How often a pretrained model's audio-visual heatmap peaks on the AV-digits digit it hears.

`python -m benchmarks.heatmap_localisation --workdir=/tmp/stica_demo --clips=40` renders
AV-digits clips (held-out handwriting) and computes each clip's heatmap
(`stica_jax.evaluate.heatmap`). The unit is the map cell, the unit the heat is computed on (the
maximum of the upsampled picture is not: bilinear upsampling puts an edge cell's maximum on the
frame's border, where a digit box rarely is, so a pixel-level hit rate has no simple chance
level).

Two digits, one sounding (`measure_two_sources`, first table): two clips of different digits
side by side, scored once with each clip's sound. A hit is the maximum cell on the box of the
digit heard, not on the other's. Saliency cannot score here: a heat blind to the sound peaks on
the same digit for both sounds, so it is on the sounding digit exactly half the time. The clips
are the workdir's own AV-digits (its `config.av_digits`), as its evaluation sees them.

One digit (`measure`, second table): a hit is the maximum cell overlapping the digit's box
(chance: the box's share of the cells) or holding its centre (chance: one cell). Two controls
separate "where the model hears the sound" from "where the picture is salient": the same
architecture at random init, whose heat already peaks on a bright digit more often than
chance, and the trained model with the sound of another clip of a *different digit*
("swapped"). Settings: the demo's own data as its evaluation sees it (64² frames resized to
32²: a 2 × 2 map, the digit covering most of it), then the digit at the pixel size the demo
trains on inside larger frames at native size (4 × 4 and 6 × 6 maps), where chance is lower.
"""

import time

import numpy as np
from absl import app, flags

_FLAGS: dict = {}  # defined when run as a script: importing this module (tests) defines none


def _box_cells(box, shape: tuple[int, int], height: int, width: int) -> np.ndarray:
    """bool `shape`: the map cells that a pixel box (top, left, bottom, right; exclusive) of a
    `height` × `width` picture overlaps (the map covers the picture evenly)."""
    h, w = shape
    top, left, bottom, right = box
    cells = np.zeros(shape, bool)
    cells[int(top * h / height) : int((bottom - 1) * h / height) + 1,
          int(left * w / width) : int((right - 1) * w / width) + 1] = True  # fmt: skip
    return cells


def measure(model, input_config, spec, clips: int, short_side: int = 0) -> dict[str, float]:
    """Hit rates over `clips` rendered clips, with each clip's own sound ("own") and with the
    sound of the next clip of a different digit ("swapped"); the model sees the frames resized
    to `short_side` (0: their native size).

    Returns:
      `box_own`, `box_swapped`: the heat's maximum cell overlaps the digit's box on the middle
      frame; `box_chance`: the mean share of the map's cells that the box overlaps.
      `centre_own`, `centre_swapped`: the maximum cell holds the box's centre;
      `centre_chance`: one cell in H' × W'.
    """
    from data_pipeline.media_decode import encode_jpeg
    from stica_jax.evaluate import heatmap
    from tests.evaluate import digit_clips

    size = spec.frame_size
    rendered = [digit_clips.render(1000 + seed, spec) for seed in range(clips + 10)]
    hits = {key: [] for key in ("box_own", "box_swapped", "centre_own", "centre_swapped")}
    box_chance, cells = [], 1
    for index in range(clips):
        frames, audio, boxes, digit = rendered[index]
        other = next(r for r in rendered[index + 1 :] if r[3] != digit)
        jpegs = [encode_jpeg(f) for f in frames]
        for sound, label in ((audio, "own"), (other[1], "swapped")):
            inputs = heatmap.clip_inputs(jpegs, sound, input_config, short_side=short_side or size)
            heat = heatmap.heatmap(model, inputs)
            cells = heat.size
            peak = np.unravel_index(np.argmax(heat), heat.shape)
            box = boxes[inputs.middle]
            on_box = _box_cells(box, heat.shape, size, size)
            hits[f"box_{label}"].append(bool(on_box[peak]))
            top, left, bottom, right = box
            (h, w), centre = heat.shape, ((top + bottom) / 2, (left + right) / 2)
            hits[f"centre_{label}"].append(
                peak == (int(centre[0] * h / size), int(centre[1] * w / size))
            )
            if label == "own":
                box_chance.append(on_box.mean())
    rates = {key: float(np.mean(value)) for key, value in hits.items()}
    return dict(rates, box_chance=float(np.mean(box_chance)), centre_chance=1 / cells)


def measure_two_sources(
    model, input_config, spec, pairs: int, short_side: int = 0
) -> dict[str, float]:
    """Two digits side by side, one of them sounding: does the heat peak on the one heard?

    `pairs` pictures, each two rendered clips of different digits (held-out handwriting) side by
    side (`S × 2S` frames), are scored twice: with the left clip's sound and with the right
    one's. The model sees the frames resized to `short_side` high (0: their native size).

    Returns:
      `sounding`: the share of scorings whose maximum cell overlaps the box of the digit that
      sounds (middle frame) and not the other's; `silent`: the same for the silent digit;
      `chance`: the mean share of the map's cells that `sounding` counts (what a maximum at a
      random cell scores). Each picture is scored with both sounds, so a heat blind to the
      sound (saliency, the brightest digit) scores `sounding == silent` exactly.
    """
    from data_pipeline.media_decode import encode_jpeg
    from stica_jax.evaluate import heatmap
    from tests.evaluate import digit_clips

    size = spec.frame_size
    rendered = [digit_clips.render(2000 + seed, spec) for seed in range(2 * pairs + 20)]
    hits = {"sounding": [], "silent": []}
    chance = []
    for _ in range(pairs):
        left = rendered.pop(0)
        right = rendered.pop(next(i for i, r in enumerate(rendered) if r[3] != left[3]))
        frames, left_boxes, right_boxes = digit_clips.side_by_side(left, right)
        jpegs = [encode_jpeg(f) for f in frames]
        for sound, boxes, other in (
            (left[1], left_boxes, right_boxes),
            (right[1], right_boxes, left_boxes),
        ):
            inputs = heatmap.clip_inputs(jpegs, sound, input_config, short_side=short_side or size)
            heat = heatmap.heatmap(model, inputs)
            peak = np.unravel_index(np.argmax(heat), heat.shape)
            sounding = _box_cells(boxes[inputs.middle], heat.shape, size, 2 * size)
            silent = _box_cells(other[inputs.middle], heat.shape, size, 2 * size)
            hits["sounding"].append(bool(sounding[peak] and not silent[peak]))
            hits["silent"].append(bool(silent[peak] and not sounding[peak]))
            chance.append((sounding & ~silent).mean())
    rates = {key: float(np.mean(value)) for key, value in hits.items()}
    return dict(rates, chance=float(np.mean(chance)))


def main(argv):
    del argv
    from flax import nnx

    from data_pipeline import av_digits, tensorflow_cpu  # noqa: F401 - TF hides GPUs first.
    from stica_jax import data, restore
    from stica_jax.models.stica import build_model

    workdir, clips = _FLAGS["workdir"].value, _FLAGS["clips"].value
    config, trained, step = restore.restore_model(workdir)
    random = build_model(config.model, config.crops, rngs=nnx.Rngs(config.seed))
    random.eval()
    input_config = config.input.to_dict()
    models = (("trained", trained), ("random init", random))

    # Two digits, one sounding: the workdir's own AV-digits (its spec, held-out handwriting), as
    # its evaluation sees them (resized to the evaluation's short side).
    own = data.av_digits_spec(config)
    print(f"{workdir} step {step}: two digits side by side, {clips} pictures × 2 sounds")
    print("| model | on the sounding digit | on the silent digit | chance |")
    print("| --- | --- | --- | --- |")
    for label, model in models:
        t0 = time.time()
        r = measure_two_sources(model, input_config, own, clips, input_config["eval_short_side"])
        print(
            f"| {label} | {r['sounding']:.2f} | {r['silent']:.2f} | {r['chance']:.2f} | "
            f"<!-- {time.time() - t0:.0f} s -->",
            flush=True,
        )

    # (spec, short side the model sees; 0 = native)
    settings = {
        "64 px, digit 70-85 %, at 32²": (av_digits.AvDigitsSpec(), input_config["eval_short_side"]),
        "64 px, digit 35-42 %": (
            av_digits.AvDigitsSpec(frame_size=64, digit_scale=(0.35, 0.42)),
            0,
        ),
        "96 px, digit 25-28 %": (
            av_digits.AvDigitsSpec(frame_size=96, digit_scale=(0.25, 0.28)),
            0,
        ),
    }
    print(f"\none digit, {clips} clips per setting")
    print(
        "| frames, digit size | model | on the box: own sound | swapped sound | chance "
        "| on the centre cell: own sound | swapped sound | chance |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (spec, short_side) in settings.items():
        for label, model in models:
            t0 = time.time()
            r = measure(model, input_config, spec, clips, short_side)
            print(
                f"| {name} | {label} | {r['box_own']:.2f} | {r['box_swapped']:.2f} | "
                f"{r['box_chance']:.2f} | {r['centre_own']:.2f} | {r['centre_swapped']:.2f} | "
                f"{r['centre_chance']:.2f} | <!-- {time.time() - t0:.0f} s -->",
                flush=True,
            )


if __name__ == "__main__":
    _FLAGS["workdir"] = flags.DEFINE_string("workdir", None, "Pretraining workdir.", required=True)
    _FLAGS["clips"] = flags.DEFINE_integer("clips", 40, "Clips (two-digit pictures) per setting.")
    app.run(main)
