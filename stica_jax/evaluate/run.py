"""One evaluation run: the model `config.init` names, through the protocol `config.protocol`.

`python -m stica_jax.evaluate --config=configs/eval/<protocol>.py ...` calls `evaluate`:

| `config.protocol` | what | module |
| --- | --- | --- |
| "finetune" | fine-tune the video backbone on HMDB-51 / UCF-101 folds | `evaluate.finetune` |
| "linear" | linear probe on the frozen video backbone, same data and schedule | `evaluate.finetune` |
| "audio" | linear classifier on frozen ResNet-9 features, ESC-50 / DCASE2014 | `evaluate.audio` |
"""

import os
from typing import Any

import ml_collections

from stica_jax.errors import ConfigError
from stica_jax.evaluate import audio, finetune, init as init_lib

PROTOCOLS = ("finetune", "linear", "audio")


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Run `config.protocol` on the model of `config.init`; returns the results.json dict.

    `workdir` receives `fold<k>/` (per-fold checkpoints, metrics and results) and
    `results.json`; a restarted run continues where it stopped.
    """
    protocol = config.get("protocol")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"config.protocol={protocol!r}; expected one of {list(PROTOCOLS)}")
    # The audio features must come from the front end the model was trained on (spec §7): a
    # workdir's or export's `input` replaces the config's. Video protocols keep their own input.
    pretrained = init_lib.load_pretrained(config, input_from_source=protocol == "audio")
    config = pretrained.config
    os.makedirs(workdir, exist_ok=True)
    if protocol == "audio":
        pretrained.require("audio", protocol)
        return audio.run_audio_protocol(
            config,
            pretrained.model,
            workdir=workdir,
            data_dir=config.get("data_dir") or None,
            init=pretrained.info,
        )
    return finetune.run_video_protocol(config, pretrained, workdir=workdir)
