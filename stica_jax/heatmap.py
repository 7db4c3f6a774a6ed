"""`python -m stica_jax.heatmap --config.init.workdir=DIR --video=A.mp4 --video=B.mp4 --out=DIR`:
audio-visual heatmaps (seed §7.4), where in the picture a pretrained model hears the sound.

Writes one PNG per video, the clip's middle frame with the heatmap overlaid, and an
`index.html` that shows them side by side; what the heat is and how the clip is sampled:
`stica_jax.evaluate.heatmap`. Every `--config.<field>` of its `default_config()` can be set
(`init.step`, `short_side`, `alpha`, `png_height`...). A user error (a missing video, a video
without sound, a workdir that is not a STiCA run's) is one line on stderr with exit status 2
(`stica_jax.cli`).
"""

import os

from absl import app, flags
from ml_collections import config_flags

from stica_jax import cli
from stica_jax.evaluate import heatmap
from stica_jax.evaluate.heatmap import HeatmapError

_CONFIG = config_flags.DEFINE_config_dict("config", heatmap.default_config(), "Heatmap settings.")
_VIDEO = flags.DEFINE_multi_string("video", [], "A video with sound (repeat, or a comma list).")
_OUT = flags.DEFINE_string("out", None, "Output directory.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {list(argv[1:])}")
    videos = [v for item in _VIDEO.value for v in item.split(",") if v]
    if not videos:
        raise HeatmapError("give at least one --video=FILE.mp4")
    if not _OUT.value:
        raise HeatmapError("give the output directory: --out=DIR")
    missing = [v for v in videos if not os.path.isfile(v)]
    if missing:
        raise HeatmapError(f"video not found: {missing[0]}")
    from data_pipeline import tensorflow_cpu  # noqa: F401 - hides GPUs from TensorFlow first.

    config = _CONFIG.value
    model, input_config = heatmap.load_model(config)
    entries = heatmap.write_heatmaps(
        model,
        input_config,
        videos,
        _OUT.value,
        short_side=config.short_side,
        decode_short_side=config.decode_short_side,
        alpha=config.alpha,
        png_height=config.png_height,
    )
    for entry in entries:
        print(f"{os.path.join(_OUT.value, entry['png'])}: {entry['video']}")
    print(os.path.join(_OUT.value, "index.html"))


if __name__ == "__main__":
    cli.run(main)
