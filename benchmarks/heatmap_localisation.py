"""How often a pretrained model's audio-visual heatmap peaks on the AV-digits digit.

`python benchmarks/heatmap_localisation.py --workdir=/tmp/stica_demo --clips=40` renders
AV-digits clips (held-out handwriting) and computes each clip's heatmap
(`stica_jax.evaluate.heatmap`). A hit is the map cell of the heat's maximum being the cell that
holds the centre of the digit's box on the displayed (middle) frame: chance is one cell in
H' × W'. The cell is the unit the heat is computed on; the maximum of the upsampled picture is
not, since bilinear upsampling puts an edge cell's maximum on the frame's border, where a digit
box rarely is, so a pixel-level hit rate has no simple chance level.

Two controls separate "where the model hears the sound" from "where the picture is salient":
- the same architecture at random init, whose heat already peaks on a bright digit more often
  than chance (its cells there have the largest activations);
- the trained model with the sound of another clip of a *different digit* ("swapped audio").
  A heat that follows the sound peaks on the digit more often with the clip's own sound.

Settings: the demo's own data as its evaluation sees it (64² frames resized to 32²: a 2 × 2 map,
the digit covering most of it), then the digit at the pixel size the demo trains on inside
larger frames at native size (4 × 4 and 6 × 6 maps), where chance is lower.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

_FLAGS: dict = {}  # defined when run as a script: importing this module (tests) defines none


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
            (h, w), cells = heat.shape, heat.size
            i, j = np.unravel_index(np.argmax(heat), heat.shape)
            top, left, bottom, right = boxes[inputs.middle]
            rows = (int(top * h / size), int((bottom - 1) * h / size))  # first and last cell
            cols = (int(left * w / size), int((right - 1) * w / size))
            hits[f"box_{label}"].append(rows[0] <= i <= rows[1] and cols[0] <= j <= cols[1])
            centre = (int((top + bottom) / 2 * h / size), int((left + right) / 2 * w / size))
            hits[f"centre_{label}"].append((i, j) == centre)
            if label == "own":
                box_chance.append((rows[1] - rows[0] + 1) * (cols[1] - cols[0] + 1) / cells)
    rates = {key: float(np.mean(value)) for key, value in hits.items()}
    return dict(rates, box_chance=float(np.mean(box_chance)), centre_chance=1 / cells)


def main(argv):
    del argv
    from flax import nnx

    from data_pipeline import av_digits, tensorflow_cpu  # noqa: F401 - TF hides GPUs first.
    from stica_jax import restore
    from stica_jax.models.stica import build_model

    workdir, clips = _FLAGS["workdir"].value, _FLAGS["clips"].value
    config, trained, step = restore.restore_model(workdir)
    random = build_model(config.model, config.crops, rngs=nnx.Rngs(config.seed))
    random.eval()
    input_config = config.input.to_dict()
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
    print(f"{workdir} step {step}, {clips} clips per setting")
    print(
        "| frames, digit size | model | on the box: own sound | swapped sound | chance "
        "| on the centre cell: own sound | swapped sound | chance |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (spec, short_side) in settings.items():
        for label, model in (("trained", trained), ("random init", random)):
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
    _FLAGS["clips"] = flags.DEFINE_integer("clips", 40, "Clips per setting.")
    app.run(main)
