"""Test set-up: eight fake CPU devices for the data-parallel tests (before JAX starts)."""

try:
    # torch and torchvision (which loads triton) must be imported before TensorFlow: loading
    # triton after TF segfaults the process. The export tests use torch, the data tests TF.
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:
    pass

import jax

jax.config.update("jax_num_cpu_devices", 8)
