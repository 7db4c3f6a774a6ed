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


def pytest_collection_modifyitems(items):
    """Slow tests first (a stable sort): under xdist the multi-minute ones then start at once and
    the fast ones fill the other worker, instead of one slow test running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
