"""A hand-run mutation check of the core: single-line bugs, each with the test that must fail.

    python -m tests.mutants              # every mutant (~25 minutes on 2 cores)
    python -m tests.mutants 3 7          # mutants 3 and 7 only
    python -m tests.mutants --check      # only that each mutated line is found, once

For each mutant, the line is changed in place, the named tests run (`pytest -x -n 0`), and the
file is restored from memory whatever happens. A mutant is *killed* when its tests fail; a
surviving mutant is a test to write. The table this prints is in CONTRIBUTING.md ("Mutation
check"). Run it on a clean tree with the test extra installed; nothing else may edit the files
meanwhile.
"""

import dataclasses
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Mutant:
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    what: str  # the bug, in words
    tests: tuple[str, ...]  # pytest node ids or files; one of them must fail


MUTANTS = [
    # -- stica_jax/crops.py ---------------------------------------------------------------------
    Mutant(
        "stica_jax/crops.py",
        "jnp.asarray(window, jnp.int32) + 1  # exclusive",
        "jnp.asarray(window, jnp.int32)  # exclusive",
        "off-by-one: the last crop position is never drawn",
        ("tests/test_crops.py",),
    ),
    Mutant(
        "stica_jax/crops.py",
        "(zero, yx[0], yx[1], zero), (t, size, size, c)",
        "(zero, yx[1], yx[0], zero), (t, size, size, c)",
        "spatial crop offsets swapped (x for y)",
        ("tests/test_crops.py",),
    ),
    Mutant(
        "stica_jax/crops.py",
        "(start, zero, zero, zero), (length, h, w, c)",
        "(zero, zero, zero, zero), (length, h, w, c)",
        "temporal crops always start at 0",
        ("tests/test_crops.py",),
    ),
    # -- stica_jax/losses.py --------------------------------------------------------------------
    Mutant(
        "stica_jax/losses.py",
        "labels = offset + jnp.arange(queries.shape[0])",
        "labels = jnp.arange(queries.shape[0])",
        "positives indexed locally: wrong on every device but the first",
        ("tests/test_losses.py",),
    ),
    Mutant(
        "stica_jax/losses.py",
        "jnp.mean(jax.nn.logsumexp(logits, axis=-1) - positive, axis=-1)",
        "jnp.mean(positive - jax.nn.logsumexp(logits, axis=-1), axis=-1)",
        "sign flip of the NCE",
        ("tests/test_losses.py",),
    ),
    Mutant(
        "stica_jax/losses.py",
        "_at_least_f32(all_keys)) / temperature",
        "_at_least_f32(all_keys)) * temperature",
        "temperature multiplies instead of divides",
        ("tests/test_losses.py",),
    ),
    Mutant(
        "stica_jax/losses.py",
        "small_keys = jax.lax.stop_gradient(v1_large)",
        "small_keys = v1_large",
        "the official pairing's small→large keys carry gradient",
        ("tests/test_losses.py",),
    ),
    Mutant(
        "stica_jax/losses.py",
        "loss = (1.0 - cross_modal_weight) * loss_crops + cross_modal_weight * loss_av",
        "loss = cross_modal_weight * loss_crops + (1.0 - cross_modal_weight) * loss_av",
        "the crop and cross-modal weights swapped",
        ("tests/test_losses.py",),
    ),
    Mutant(
        "stica_jax/losses.py",
        "pairwise_nce(index_1[1], index_1[0], **kw) + pairwise_nce(index_1[0], index_1[1], **kw)",
        "pairwise_nce(index_1[1], index_1[0], **kw) + pairwise_nce(index_1[1], index_1[0], **kw)",
        "one direction of the symmetric large↔large term dropped",
        ("tests/test_losses.py",),
    ),
    # -- stica_jax/models/stica.py --------------------------------------------------------------
    Mutant(
        "stica_jax/models/stica.py",
        "fold_keys(sample_keys, _VIEW_CROPS + v),",
        "fold_keys(sample_keys, _VIEW_CROPS),",
        "both views crop at the same positions",
        ("tests/test_crops.py",),
    ),
    Mutant(
        "stica_jax/models/heads.py",
        "return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)",
        "return x / jnp.maximum(jnp.linalg.norm(x, axis=0, keepdims=True), eps)",
        "embeddings normalised over the batch instead of each row",
        ("tests/test_models.py",),
    ),
    # -- stica_jax/step.py ----------------------------------------------------------------------
    Mutant(
        "stica_jax/step.py",
        "            new_stats = average_batch_stats(new_stats)",
        "            pass",
        "per-device BatchNorm statistics leave the step unaveraged",
        (
            "tests/test_layer_options.py::test_the_step_lowers_with_one_pass_statistics_and_with_per_device_statistics",
        ),
    ),
    Mutant(
        "stica_jax/step.py",
        "optax.add_decayed_weights(weight_decay), optax.sgd(schedule, momentum=momentum)",
        "optax.sgd(schedule, momentum=momentum), optax.add_decayed_weights(weight_decay)",
        "weight decay added after momentum (decoupled), not torch's coupled decay",
        ("tests/evaluate/test_finetune.py", "tests/test_train.py"),
    ),
    Mutant(
        "stica_jax/step.py",
        "return jax.tree.map(lambda x: jax.lax.pmean(x, axis_name), batch_stats)",
        "return jax.tree.map(lambda x: jax.lax.psum(x, axis_name), batch_stats)",
        "per-device statistics summed over devices instead of averaged",
        ("tests/test_layer_options.py",),
    ),
    # -- data_pipeline/media_decode.py ----------------------------------------------------------
    Mutant(
        "data_pipeline/media_decode.py",
        "shift = round((first_audio_time - first_video_time) * settings.sample_rate)",
        "shift = round((first_video_time - first_audio_time) * settings.sample_rate)",
        "late audio moved earlier and early audio later",
        ("tests/data_pipeline/test_media_decode.py",),
    ),
    Mutant(
        "data_pipeline/media_decode.py",
        "if max(height, width) > settings.max_input_side:",
        "if max(height, width) >= settings.max_input_side:",
        "a frame exactly at the size limit is skipped",
        ("tests/data_pipeline/test_media_decode.py",),
    ),
    # -- data_pipeline/augment.py ---------------------------------------------------------------
    Mutant(
        "data_pipeline/augment.py",
        "return matrix * factors[1], offset * factors[1] + (1.0 - factors[1]) * mean_grey",
        "return matrix * factors[1], offset * factors[1] + (1.0 + factors[1]) * mean_grey",
        "contrast blends away from the frame's grey",
        (
            "tests/data_pipeline/test_augment.py::"
            "test_the_folded_colour_map_equals_the_ops_applied_one_after_another",
        ),
    ),
    Mutant(
        "data_pipeline/augment.py",
        "towards_grey = factors[2] * identity + (1.0 - factors[2]) * luma * tf.ones([1, 3])",
        "towards_grey = factors[2] * identity + (1.0 - factors[2]) * tf.ones([3, 3]) / 3.0",
        "saturation towards the channel mean instead of ITU-R 601 luma",
        ("tests/data_pipeline/test_augment.py",),
    ),
    Mutant(
        "data_pipeline/augment.py",
        "kernel_1d = tf.exp(-0.5 * tf.square(offsets / tf.cast(sigma, tf.float32)))",
        "kernel_1d = tf.exp(-1.0 * tf.square(offsets / tf.cast(sigma, tf.float32)))",
        "Gaussian blur with σ/√2",
        ("tests/data_pipeline/test_augment.py",),
    ),
    # -- data_pipeline (the training input by stage) --------------------------------------------
    Mutant(
        "data_pipeline/stages.py",
        "host_seed = tf.constant([seed, process_index], tf.int64)",
        "host_seed = tf.constant([seed, 0], tf.int64)",
        "every host draws the same augmentations",
        ("tests/data_pipeline/test_pipeline.py",),
    ),
    Mutant(
        "data_pipeline/batching.py",
        "+ self._process_index * self._batch_size",
        "+ 0 * self._batch_size",
        "every host's rows get host 0's global sample indices",
        ("tests/data_pipeline/test_pipeline.py",),
    ),
    Mutant(
        "data_pipeline/pipeline.py",
        "start_position = start_step * batch_size_per_host",
        "start_position = max(start_step - 1, 0) * batch_size_per_host",
        "a resumed run reads one batch too early",
        ("tests/data_pipeline/test_pipeline.py",),
    ),
    # -- stica_jax/workdir_lock.py --------------------------------------------------------------
    Mutant(
        "stica_jax/workdir_lock.py",
        "        os.link(tmp, path)\n        return True",
        "        os.replace(tmp, path)\n        open(tmp, 'w').close()\n        return True",
        "the lock is moved into place over an existing one: two runs both win",
        ("tests/test_workdir_lock.py",),
    ),
    Mutant(
        "stica_jax/workdir_lock.py",
        "        if self.host != socket.gethostname():\n            return False",
        "        if self.host != socket.gethostname():\n            return True",
        "a lock of another host is taken over as if its run were gone",
        ("tests/test_workdir_lock.py",),
    ),
    # -- stica_jax/evaluate/probe.py ------------------------------------------------------------
    Mutant(
        "stica_jax/evaluate/probe.py",
        "nearest = np.argsort(-sims, axis=1)[:, :k]",
        "nearest = np.argsort(sims, axis=1)[:, :k]",
        "k-NN votes with the least similar clips",
        ("tests/evaluate/test_probe.py",),
    ),
    Mutant(
        "stica_jax/evaluate/probe.py",
        "return 100.0 * float(np.mean(clf.predict(scaler.transform(test_x)) == test_y))",
        "return 100.0 * float(np.mean(clf.predict(test_x) == test_y))",
        "the test features are not standardised with the training statistics",
        ("tests/evaluate/test_probe.py",),
    ),
    # -- stica_jax/evaluate/finetune.py ---------------------------------------------------------
    Mutant(
        "stica_jax/evaluate/finetune.py",
        'return max(sorted(evaluations), key=lambda e: (evaluations[e]["top1"], -e))',
        'return max(sorted(evaluations), key=lambda e: (evaluations[e]["top1"], e))',
        "a tie keeps the later epoch (the official loop keeps the first)",
        ("tests/evaluate/test_finetune.py",),
    ),
    # -- added after the first run (numbers above kept) ------------------------------------------
    Mutant(
        "data_pipeline/media_decode.py",
        "if decode_errors > 10:",
        "if decode_errors >= 10:",
        "a file with exactly ten undecodable packets is skipped",
        (
            "tests/data_pipeline/test_media_decode.py::"
            "test_up_to_ten_undecodable_packets_cost_their_frames_and_more_skip_the_file",
        ),
    ),
    Mutant(
        "data_pipeline/media_decode.py",
        "time_s = (\n                        (last_video_time + last_frame_duration)",
        "time_s = (\n                        last_video_time",
        "frames without timestamps all placed at the previous frame's time",
        (
            "tests/data_pipeline/test_media_decode.py::"
            "test_a_raw_h264_stream_without_timestamps_keeps_its_frames_in_order",
        ),
    ),
    Mutant(
        "data_pipeline/augment.py",
        "area_range=config.crop_scale,",
        "area_range=(0.05, 1.0),",
        "the crop's scale range ignored (TensorFlow's default)",
        (
            "tests/data_pipeline/test_augment.py::"
            "test_crop_boxes_stay_in_the_scale_and_aspect_ranges_and_span_them",
        ),
    ),
]


def _apply(mutant: Mutant) -> str:
    path = os.path.join(ROOT, mutant.path)
    with open(path) as f:
        original = f.read()
    count = original.count(mutant.old)
    if count != 1:
        raise SystemExit(f"{mutant.path}: the mutated text occurs {count} times: {mutant.old!r}")
    return original


def _run(index: int, mutant: Mutant) -> tuple[bool, float, str]:
    path = os.path.join(ROOT, mutant.path)
    original = _apply(mutant)
    # Whole files run without their slow tests; a test named by node id runs whatever its marker.
    selection = [] if any("::" in t for t in mutant.tests) else ["-m", "not slow"]
    start = time.time()
    try:
        with open(path, "w") as f:
            f.write(original.replace(mutant.old, mutant.new))
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-x",
                "-q",
                "-n",
                "0",
                "-p",
                "no:cacheprovider",
                "--durations=0",
                *selection,
                *mutant.tests,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        with open(path, "w") as f:
            f.write(original)
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED ")]
    return result.returncode != 0, time.time() - start, failed[0][7:] if failed else ""


def main(argv: list[str]) -> int:
    if "--check" in argv:
        for mutant in MUTANTS:
            _apply(mutant)
        print(f"{len(MUTANTS)} mutants, each found once")
        return 0
    chosen = [int(a) for a in argv] or range(1, len(MUTANTS) + 1)
    survivors = 0
    print("| # | file | bug | killed by | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for index in chosen:
        mutant = MUTANTS[index - 1]
        killed, seconds, test = _run(index, mutant)
        survivors += not killed
        verdict = f"`{test}`" if killed else "**survived**"
        print(
            f"| {index} | `{mutant.path}` | {mutant.what} | {verdict} | {seconds:.0f} |", flush=True
        )
    print(f"{len(chosen) - survivors} of {len(chosen)} killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
