"""TFDS builders of stica_jax; importing this package registers them with TFDS."""

from data_pipeline.av_digits import AvDigits

BUILDERS = {"av_digits": AvDigits}
