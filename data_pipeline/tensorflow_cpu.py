"""TensorFlow for the input pipeline, with every GPU hidden from it.

Import `tf` from here, never `tensorflow` directly, in pipeline modules: the accelerators belong
to JAX, and a TensorFlow that sees a GPU reserves most of its memory at the first op.
"""

import tensorflow as tf

try:
    tf.config.set_visible_devices([], "GPU")
except RuntimeError:
    # Devices were already initialised (TF ran an op before this import); the visible set can no
    # longer change, and whoever initialised them chose it.
    pass

__all__ = ["tf"]
