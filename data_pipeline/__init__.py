"""TFDS builders and the tf.data audio-video input pipeline of stica_jax."""
