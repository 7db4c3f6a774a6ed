"""Every refusal of the evaluation configs' validators, one line each, before anything runs:
`finetune.validate_video_config` (fine-tuning and the linear probe on HMDB-51 / UCF-101) and
`audio.validate_audio_config` (ESC-50 / DCASE2014). The configs shipped validate (the tests of
each protocol); here each is broken in one way."""

import pytest
from flax import nnx

from configs.eval import audio_esc50, finetune_hmdb51
from stica_jax.errors import ConfigError
from stica_jax.evaluate import audio, finetune
from stica_jax.models.stica import build_model
from tests.tiny import tiny_config


def _set(path, value):
    def change(config):
        *parents, name = path.split(".")
        for parent in parents:
            config = config[parent]
        config[name] = value

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_set("protocol", "knn"), "protocol 'knn' is not one of ('finetune', 'linear')"),
        (
            _set("global_batch_size", 12),
            "global_batch_size=12 must be a positive multiple of the 8 devices and the 1 hosts",
        ),
        (
            _set("eval_batch_size", 0),
            "eval_batch_size=0 must be a positive multiple of the 8 devices and the 1 hosts",
        ),
        (_set("pooling", "max"), "pooling='max'; expected one of ['avg', 'transformer']"),
        (_set("model.dtype", "float16"), "unknown model.dtype 'float16'; expected"),
        (_set("num_epochs", 0), "num_epochs and clips_per_video must be >= 1"),
        (_set("clips_per_video", 0), "num_epochs and clips_per_video must be >= 1"),
        (_set("folds", "1,4"), "stica_hmdb51 has folds 1..3; got fold 4"),
    ],
)
def test_a_video_eval_config_that_cannot_run_is_one_line(change, message):
    config = finetune_hmdb51.get_config()
    finetune.validate_video_config(config, num_devices=8, num_processes=1)  # as shipped: valid
    change(config)
    with pytest.raises(ConfigError) as refused:
        finetune.validate_video_config(config, num_devices=8, num_processes=1)
    assert str(refused.value).startswith(message), str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_video_batch_must_divide_over_the_hosts_too():
    config = finetune_hmdb51.get_config()
    config.global_batch_size = 24  # 8 devices × 3, over 2 hosts: 12 each, fine; over 16: not
    finetune.validate_video_config(config, num_devices=8, num_processes=2)
    with pytest.raises(ConfigError, match=r"global_batch_size=24 must be .* the 16 hosts"):
        finetune.validate_video_config(config, num_devices=8, num_processes=16)


def _stica():
    config = tiny_config()
    return nnx.eval_shape(lambda: build_model(config.model, None, rngs=nnx.Rngs(0)))


@pytest.mark.parametrize(
    "change, message",
    [
        (
            _set("audio.extract_batch_size", 12),
            "audio.extract_batch_size=12 must be a multiple of the 8 devices and the 1 hosts",
        ),
        (_set("audio.subclips", 0), "audio.subclips=0 must be >= 1"),
        (_set("audio.epochs", 0), "audio.epochs=0 must be >= 1"),
        (_set("audio.batch_size", 0), "audio.batch_size=0 must be >= 1"),
        (
            _set("input.audio_frontend", "mfcc"),
            "unknown input.audio_frontend 'mfcc'; expected one of ['stica', 'official']",
        ),
        (_set("audio.seconds", 0.001), "audio.seconds=0.001 is shorter than one"),
        (
            _set("audio.seconds", 0.1),
            "0.1-s sub-clips give an audio map of 1 time steps, fewer than the pooling window",
        ),
        (_set("folds", "6"), "stica_esc50 has folds 1..5; got fold 6"),
    ],
)
def test_an_audio_eval_config_that_cannot_run_is_one_line(change, message):
    config = audio_esc50.get_config()
    model = _stica()
    audio.validate_audio_config(config, model, num_devices=8, num_processes=1)  # as shipped
    change(config)
    with pytest.raises(ConfigError) as refused:
        audio.validate_audio_config(config, model, num_devices=8, num_processes=1)
    assert str(refused.value).startswith(message), str(refused.value)
    assert "\n" not in str(refused.value)


def test_the_audio_protocol_refuses_a_model_without_an_audio_tower():
    with pytest.raises(ConfigError) as refused:
        audio.validate_audio_config(
            audio_esc50.get_config(), object(), num_devices=8, num_processes=1
        )
    assert str(refused.value) == (
        "the audio protocol needs a model with an audio tower (a STiCA); got object"
    )
