"""How often a pretrained model's audio-visual heatmap peaks on the AV-digits digit.

`python benchmarks/heatmap_localisation.py --workdir=/tmp/stica_demo --clips=40` renders
AV-digits clips whose digit has the pixel size the demo trained on (the demo crops 32² from
frames where the digit fills 70-85 %, so about 25 px) inside larger frames, and computes each
clip's heatmap (`stica_jax.evaluate.heatmap`) at the frames' native size. A hit is the
upsampled heatmap's maximum inside the digit's box. The box is taken over the clip window, where
the digit moved, and also on the displayed middle frame. Chance is the box's share of the
frame. The same architecture at random init is the control.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Pretraining workdir.", required=True)
_CLIPS = flags.DEFINE_integer("clips", 40, "Clips per setting.")


def measure(model, input_config, spec, clips: int, short_side: int = 0) -> dict[str, float]:
    """Hit rates and chance over `clips` rendered clips; the model sees the frames resized to
    `short_side` (0: their native size), the heat is upsampled to the native size."""
    from data_pipeline.media_decode import encode_jpeg
    from stica_jax.evaluate import heatmap
    from tests.evaluate import digit_clips

    size = spec.frame_size
    span = (input_config["num_frames"] - 1) * input_config["frame_stride"] + 1
    hits_window, hits_middle, chance_window, chance_middle = [], [], [], []
    for seed in range(clips):
        frames, audio, boxes, _ = digit_clips.render(1000 + seed, spec)
        inputs = heatmap.clip_inputs(
            [encode_jpeg(f) for f in frames], audio, input_config, short_side=short_side or size
        )
        window = boxes[inputs.start : inputs.start + span]
        union = (window[:, 0].min(), window[:, 1].min(), window[:, 2].max(), window[:, 3].max())
        middle = boxes[inputs.middle]
        up = heatmap.upsample(heatmap.heatmap(model, inputs), size, size)
        y, x = np.unravel_index(np.argmax(up), up.shape)
        for box, hits, chance in (
            (union, hits_window, chance_window),
            (middle, hits_middle, chance_middle),
        ):
            hits.append(box[0] <= y < box[2] and box[1] <= x < box[3])
            chance.append((box[2] - box[0]) * (box[3] - box[1]) / size**2)
    return {
        "hit_window": float(np.mean(hits_window)),
        "chance_window": float(np.mean(chance_window)),
        "hit_middle": float(np.mean(hits_middle)),
        "chance_middle": float(np.mean(chance_middle)),
    }


def main(argv):
    del argv
    from flax import nnx

    from data_pipeline import av_digits, tensorflow_cpu  # noqa: F401 - TF hides GPUs first.
    from stica_jax import restore
    from stica_jax.models.stica import build_model

    config, trained, step = restore.restore_model(_WORKDIR.value)
    random = build_model(config.model, config.crops, rngs=nnx.Rngs(config.seed))
    random.eval()
    input_config = config.input.to_dict()
    # (spec, short side the model sees; 0 = native): the demo's own data seen as the demo's
    # evaluation sees it (the whole 64² frame at 32²), then the digit at its trained pixel size
    # inside larger frames, where chance is lower.
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
    print(f"{_WORKDIR.value} step {step}, {_CLIPS.value} clips per setting")
    for name, (spec, short_side) in settings.items():
        for label, model in (("trained", trained), ("random init", random)):
            t0 = time.time()
            r = measure(model, input_config, spec, _CLIPS.value, short_side)
            print(
                f"{name:<28} {label:<12} hit (window box) {r['hit_window']:.2f} vs chance "
                f"{r['chance_window']:.2f} | hit (middle frame box) {r['hit_middle']:.2f} vs "
                f"chance {r['chance_middle']:.2f} ({time.time() - t0:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    app.run(main)
