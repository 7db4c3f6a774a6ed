"""stica_jax: STiCA (Space-Time Crop & Attend) in JAX / Flax NNX.

The model, crop, loss and train-step modules import without TensorFlow, so they run on
accelerator hosts that only have JAX installed; TensorFlow is needed by `data_pipeline` only.
"""

__version__ = "0.1.0"
