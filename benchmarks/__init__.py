"""Benchmarks of stica_jax and their results (`README.md`, `RESULTS.md`).

Each one runs from the repository root as `python -m benchmarks.<name>` (it imports `configs`,
`tests` and its sibling modules as packages of the checkout). `measured_step` builds the train
step that `train_step` times and `hlo_stats` counts (by `stica_jax.hlo`, which also categorises
HLO instructions for `profile_summary`, the profile summary of `train_step` and
`torch_baseline`).
"""
