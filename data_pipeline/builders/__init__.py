"""TFDS builders of stica_jax; importing this package registers them with TFDS."""

from data_pipeline.av_digits import AvDigits
from data_pipeline.builders.dcase2014 import SticaDcase2014
from data_pipeline.builders.esc50 import SticaEsc50
from data_pipeline.builders.hmdb51 import SticaHmdb51
from data_pipeline.builders.kinetics400 import SticaKinetics400
from data_pipeline.builders.ucf101 import SticaUcf101

# The names `python -m stica_jax.prepare NAME` accepts.
BUILDERS = {
    "av_digits": AvDigits,
    "kinetics400": SticaKinetics400,
    "ucf101": SticaUcf101,
    "hmdb51": SticaHmdb51,
    "esc50": SticaEsc50,
    "dcase2014": SticaDcase2014,
}
