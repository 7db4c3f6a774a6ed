"""Test set-up: eight fake CPU devices for the data-parallel tests (before JAX starts)."""

import jax

jax.config.update("jax_num_cpu_devices", 8)
