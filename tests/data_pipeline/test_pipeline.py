import dataclasses
import os
import shutil

import numpy as np
import pytest

from data_pipeline import batching, pipeline, record_stream, stages
from data_pipeline.datasets import load_builder
from data_pipeline.input_config import InputConfig
from data_pipeline.records import marking_corrupt_records, parse, split_records
from data_pipeline.tensorflow_cpu import tf


def _batches(iterator, count):
    return [next(iterator) for _ in range(count)]


def test_pretraining_batches_have_the_contract_shapes(digits_dir, tiny_config):
    iterator = pipeline.make_dataset(
        tiny_config,
        "pretrain",
        split="train",
        data_dir=digits_dir,
        batch_size_per_host=4,
        seed=0,
        process_index=1,
        process_count=2,
    )
    batch, second = _batches(iterator, 2)
    assert batch["video1"].shape == batch["video2"].shape == (4, 8, 32, 32, 3)
    assert batch["video1"].dtype == np.float32
    assert batch["audio"].shape == (4, 40, 99, 1) and batch["audio"].dtype == np.float32
    assert batch["label"].dtype == np.int32 and set(batch["label"]) <= set(range(10))
    # index = step * global_batch + process_index * B + i
    np.testing.assert_array_equal(batch["index"], [4, 5, 6, 7])
    np.testing.assert_array_equal(second["index"], [12, 13, 14, 15])
    assert batch["index"].dtype == np.int64
    assert not np.allclose(batch["video1"], batch["video2"])
    assert np.isfinite(batch["audio"]).all() and batch["audio"].std() > 0.5  # not silence
    # What a host whose input failed steps on until every host stops (`loop.ShardBatches`):
    # the next batch's keys, shapes, dtypes and indices, every other value zero.
    stand_in = iterator.stand_in_batch()
    assert {k: (v.shape, v.dtype) for k, v in stand_in.items()} == {
        k: (v.shape, v.dtype) for k, v in second.items()
    }
    np.testing.assert_array_equal(stand_in["index"], [20, 21, 22, 23])
    assert not any(v.any() for k, v in stand_in.items() if k != "index")


@pytest.mark.parametrize("frontend", ["stica", "official"])
def test_two_seconds_of_audio_give_a_257_by_199_spectrogram(digits_dir, tiny_config, frontend):
    config = dataclasses.replace(
        tiny_config, audio_seconds=2.0, num_mel_bins=257, audio_frontend=frontend
    )
    batch = next(
        pipeline.make_dataset(
            config,
            "pretrain",
            split="test",
            data_dir=digits_dir,
            batch_size_per_host=2,
            seed=0,
            process_index=0,
            process_count=1,
        )
    )
    assert batch["audio"].shape == (2, 257, 199, 1) and config.spectrogram_frames == 199


@pytest.mark.slow
def test_the_same_seed_gives_the_same_batches_and_another_seed_others(digits_dir, tiny_config):
    def first_batches(seed):
        return _batches(
            pipeline.make_dataset(
                tiny_config,
                "pretrain",
                split="train",
                data_dir=digits_dir,
                batch_size_per_host=4,
                seed=seed,
                process_index=0,
                process_count=1,
            ),
            2,
        )

    run1, run2, other = first_batches(5), first_batches(5), first_batches(6)
    for a, b in zip(run1, run2):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(run1[0]["video1"], other[0]["video1"])


def test_resuming_at_a_step_gives_the_batches_of_the_uninterrupted_run(digits_dir, tiny_config):
    # 40 records, B = 4: one epoch is 10 steps; resume inside the second epoch.
    def run(start_step, count):
        return _batches(
            pipeline.make_dataset(
                tiny_config,
                "pretrain",
                split="train",
                data_dir=digits_dir,
                batch_size_per_host=4,
                seed=1,
                process_index=0,
                process_count=1,
                start_step=start_step,
            ),
            count,
        )

    uninterrupted = run(0, 13)
    resumed = run(11, 2)
    for a, b in zip(uninterrupted[11:], resumed):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def _host_records_of_epoch(digits_dir, config, process_index, process_count):
    builder = load_builder(config.dataset, digits_dir)
    records = split_records(builder, "train", config, process_index, process_count)
    stream = record_stream.training_records(
        records, seed=0, process_index=process_index, group_size=config.group_size
    )
    return [
        bytes(r) for r in stream.take(records.num_records).as_numpy_iterator()
    ], records.num_records


def test_two_hosts_read_disjoint_records_that_cover_the_split(digits_dir, tiny_config):
    host0, count0 = _host_records_of_epoch(digits_dir, tiny_config, 0, 2)
    host1, count1 = _host_records_of_epoch(digits_dir, tiny_config, 1, 2)
    assert count0 + count1 == 40
    assert len(set(host0)) == count0 and len(set(host1)) == count1  # an epoch repeats nothing
    assert not set(host0) & set(host1)


def test_epochs_visit_the_records_in_different_orders(digits_dir, tiny_config):
    builder = load_builder(tiny_config.dataset, digits_dir)
    records = split_records(builder, "train", tiny_config, 0, 1)
    stream = record_stream.training_records(
        records, seed=0, process_index=0, group_size=tiny_config.group_size
    )
    both = [bytes(r) for r in stream.take(80).as_numpy_iterator()]
    assert set(both[:40]) == set(both[40:]) and both[:40] != both[40:]


def test_hosts_draw_their_own_augmentations_for_the_same_clip(digits_dir, tiny_config):
    """One clip at the same stream position on host 0 and host 1 (`stages.example_seed`): each
    host draws its own window, crops and jitter; the same host and position draw the same."""
    builder = load_builder(tiny_config.dataset, digits_dir)
    source = builder.info.splits["train"].file_instructions[0].filename
    record = next(iter(tf.data.TFRecordDataset(source)))
    example = parse(builder, record)

    def views(process_index, position=0):
        seed = stages.example_seed(7, process_index, tf.constant(position, tf.int64))
        return stages.pretrain_example(example, seed, tiny_config)["video1"].numpy()

    host0 = views(0)
    np.testing.assert_array_equal(views(0), host0)
    assert not np.allclose(views(1), host0)
    assert not np.allclose(views(0, position=1), host0)


def test_supervised_batches_hold_one_view_and_the_label(digits_dir, tiny_config):
    batch = next(
        pipeline.make_dataset(
            tiny_config,
            "supervised",
            split="train",
            data_dir=digits_dir,
            batch_size_per_host=3,
            seed=0,
            process_index=0,
            process_count=1,
        )
    )
    assert set(batch) == {"video", "label", "index"}
    assert batch["video"].shape == (3, 8, 32, 32, 3)


def test_eval_gives_every_clip_and_crop_once_with_equal_batch_counts_on_every_host(
    digits_dir, tiny_config
):
    # 12 test records on 2 hosts: chunks of 4 → host 0 reads 8, host 1 reads 4; both yield 2 batches of 5.
    hosts = [
        list(
            pipeline.make_dataset(
                tiny_config,
                "video_eval",
                split="test",
                data_dir=digits_dir,
                batch_size_per_host=5,
                process_index=i,
                process_count=2,
            )
        )
        for i in range(2)
    ]
    assert len(hosts[0]) == len(hosts[1]) == 2
    assert hosts[0][0]["video"].shape == (5, 2 * 3, 8, 32, 32, 3)
    assert sum(int(b["mask"].sum()) for host in hosts for b in host) == 12
    padded = hosts[1][-1]
    assert not padded["mask"].any() and (padded["index"] == -1).all()
    # The three crops of one clip differ (left, centre, right): frames are 48 wide, resized to 40.
    views = hosts[0][0]["video"][0]
    assert not np.allclose(views[0], views[2])


@pytest.mark.parametrize(
    "purpose, arguments, message",
    [
        ("pretrain", {}, "a 'pretrain' dataset needs a seed"),
        ("video_eval", {"seed": 0}, "a 'video_eval' pass reads every example once"),
        ("audio_eval", {"start_step": 3}, "it takes no seed or start_step"),
        ("eval", {}, r"unknown dataset purpose 'eval'; expected one of \('pretrain', "),
    ],
)
def test_make_dataset_refuses_what_its_purpose_does_not_take(
    tiny_config, purpose, arguments, message
):
    with pytest.raises(ValueError, match=message):
        pipeline.make_dataset(
            tiny_config,
            purpose,
            split="train",
            batch_size_per_host=4,
            data_dir="/nonexistent",  # refused before anything is read
            process_index=0,
            process_count=1,
            **arguments,
        )


def test_spatial_eval_crops_run_from_one_end_of_the_long_side_to_the_other(tiny_config):
    config = dataclasses.replace(tiny_config, crop_size=4, eval_short_side=4, eval_crops=3)
    columns = np.broadcast_to(np.arange(12, dtype=np.uint8)[None, None, :, None], (1, 4, 12, 3))
    crops = stages.spatial_crops(tf.constant(columns), config).numpy()
    assert crops.shape == (3, 1, 4, 4, 3)
    np.testing.assert_array_equal(
        crops[:, 0, 0, :, 0], [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    )


def test_audio_eval_gives_evenly_spaced_subclips(digits_dir, tiny_config):
    batch = next(
        pipeline.make_dataset(
            tiny_config,
            "audio_eval",
            split="test",
            data_dir=digits_dir,
            batch_size_per_host=4,
            process_index=0,
            process_count=1,
        )
    )
    assert batch["audio"].shape == (4, 3, 40, 99, 1)
    starts = stages.evenly_spaced_starts(tf.constant(52_800), 24_000, 3).numpy()
    np.testing.assert_array_equal(starts, [0, 14_400, 28_800])


def test_the_audio_window_starts_with_the_clip_and_stays_inside_the_audio():
    audio = tf.constant(np.arange(100, dtype=np.int16))
    np.testing.assert_allclose(
        stages.audio_window(audio, 0.2, 30, 100).numpy() * 32768, np.arange(20, 50)
    )
    np.testing.assert_allclose(
        stages.audio_window(audio, 0.9, 30, 100).numpy() * 32768, np.arange(70, 100)
    )
    short = stages.audio_window(audio[:10], 0.0, 30, 100).numpy() * 32768
    np.testing.assert_allclose(short, np.r_[np.arange(10), np.zeros(20)])


def test_the_official_frontend_reads_the_int16_window_like_the_official_loader():
    """Official `datasets/audio_utils.py`: `logfbank` of the int16 samples of the window."""
    import python_speech_features

    samples = np.random.default_rng(0).integers(-32768, 32768, 60_000).astype(np.int16)
    window = stages.audio_window(tf.constant(samples), 0.5, 24_000, 24_000)
    config = InputConfig(audio_frontend="official", audio_seconds=1.0)
    ours = stages.spectrogram(window, config).numpy()
    reference = python_speech_features.logfbank(
        samples[12_000:36_000].astype(np.float64), 24000, winlen=0.02, winstep=0.01,
        nfilt=257, nfft=1024,
    ).T  # fmt: skip
    assert ours.shape == (257, 99, 1) == (257, config.spectrogram_frames, 1)
    np.testing.assert_allclose(ours[..., 0], reference, rtol=0, atol=1e-4)


def test_clip_frames_follow_the_stride_and_repeat_the_last_frame_of_short_videos(tiny_config):
    indices = stages.clip_frame_indices(tf.constant(3), tf.constant(12), tiny_config).numpy()
    np.testing.assert_array_equal(indices, [3, 5, 7, 9, 11, 11, 11, 11])


def _corrupt(records: list[bytes], bad_jpegs: int, garbage: int) -> None:
    """Makes record `bad_jpegs` hold undecodable frames and record `garbage` unparsable, in place."""
    example = tf.train.Example.FromString(records[bad_jpegs])
    frames = example.features.feature["video"].bytes_list.value
    for i in range(len(frames)):
        frames[i] = b"\xff\xd8 not a jpeg"
    records[bad_jpegs] = example.SerializeToString()
    records[garbage] = b"\x00garbage that is no tf.Example"


def test_corrupt_records_are_counted_and_replaced_by_valid_rows(digits_dir, tiny_config, tmp_path):
    builder = load_builder(tiny_config.dataset, digits_dir)
    source = builder.info.splits["test"].file_instructions[0].filename
    records = [bytes(r) for r in tf.data.TFRecordDataset(source).as_numpy_iterator()]
    _corrupt(records, bad_jpegs=1, garbage=5)
    corrupt_file = str(tmp_path / "corrupt.tfrecord")
    with tf.io.TFRecordWriter(corrupt_file) as writer:
        for record in records:
            writer.write(record)
    host = record_stream.HostRecords(
        (corrupt_file,), (record_stream.Chunk(0, 0, 6), record_stream.Chunk(0, 6, 6))
    )
    dataset = marking_corrupt_records(
        record_stream.training_records(host, seed=0, process_index=0, group_size=2).enumerate(),
        lambda position, record: {
            **stages.supervised_example(
                parse(builder, record),
                tf.constant([0, 0], tf.int64) + position,
                tiny_config,
            ),
            "_position": position,
        },
    ).batch(4, drop_remainder=True)
    batches = batching.TrainingBatches(
        dataset,
        batch_size_per_host=4,
        process_index=0,
        process_count=1,
        start_step=0,
        records_per_epoch=12,
    )
    read = _batches(batches, 6)  # two epochs of 12 records, 2 corrupt in each
    assert batches.skipped_records == 4
    for batch in read:
        videos = batch["video"].reshape(4, -1)
        assert np.abs(videos).sum(axis=1).min() > 0  # no zero placeholder left
    # A corrupt row is a copy of a valid row of its batch.
    assert any(len({row.tobytes() for row in batch["video"]}) < 4 for batch in read)


def test_resuming_after_corrupt_records_gives_the_batches_of_the_uninterrupted_run(
    digits_dir, tiny_config, tmp_path
):
    # The same tiny AV-digits with two corrupt records in its first train shard.
    data_dir = str(tmp_path / "tfds")
    shutil.copytree(digits_dir, data_dir)
    builder = load_builder(tiny_config.dataset, data_dir)
    shard = builder.info.splits["train"].file_instructions[0].filename
    records = [bytes(r) for r in tf.data.TFRecordDataset(shard).as_numpy_iterator()]
    _corrupt(records, bad_jpegs=0, garbage=3)
    with tf.io.TFRecordWriter(shard) as writer:
        for record in records:
            writer.write(record)

    def run(start_step, count):
        batches = pipeline.make_dataset(
            tiny_config,
            "pretrain",
            split="train",
            data_dir=data_dir,
            batch_size_per_host=4,
            seed=1,
            process_index=0,
            process_count=1,
            start_step=start_step,
        )
        return _batches(batches, count), batches.skipped_records

    uninterrupted, skipped = run(0, 20)
    assert skipped == 4  # 2 corrupt records per epoch of 40 records = 10 steps
    for start_step in (3, 11):
        resumed, _ = run(start_step, 2)
        for a, b in zip(uninterrupted[start_step:], resumed):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])


def test_a_truncated_shard_loses_only_its_tail_and_resuming_gives_the_same_batches(
    digits_dir, tiny_config, tmp_path, capfd
):
    # The first train shard cut in the middle of a record, as by a failed copy.
    data_dir = str(tmp_path / "tfds")
    shutil.copytree(digits_dir, data_dir)
    builder = load_builder(tiny_config.dataset, data_dir)
    shard = builder.info.splits["train"].file_instructions[0].filename
    records = [bytes(r) for r in tf.data.TFRecordDataset(shard).as_numpy_iterator()]
    # Each record is framed by 16 bytes (length, its CRC, the data's CRC).
    kept = len(records) // 2
    cut = sum(len(r) + 16 for r in records[:kept]) + 10
    os.truncate(shard, cut)

    def run(start_step, count):
        batches = pipeline.make_dataset(
            tiny_config,
            "pretrain",
            split="train",
            data_dir=data_dir,
            batch_size_per_host=4,
            seed=1,
            process_index=0,
            process_count=1,
            start_step=start_step,
        )
        return _batches(batches, count), batches.skipped_records

    per_epoch = builder.info.splits["train"].num_examples
    uninterrupted, skipped = run(0, per_epoch // 4)  # one epoch
    assert skipped == len(records) - kept  # every record past the cut, each counted once
    assert f'"{shard}" is unreadable (corrupt or truncated TFRecord)' in capfd.readouterr().err
    for batch in uninterrupted:
        assert np.abs(batch["video1"].reshape(4, -1)).sum(axis=1).min() > 0  # rows replaced
    for start_step in (3, per_epoch // 4 - 2):
        resumed, _ = run(start_step, 2)
        for a, b in zip(uninterrupted[start_step:], resumed):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])


def test_a_stream_without_a_valid_record_stops_within_a_bounded_lookahead(
    digits_dir, tiny_config, tmp_path
):
    data_dir = str(tmp_path / "tfds")
    shutil.copytree(digits_dir, data_dir)
    builder = load_builder(tiny_config.dataset, data_dir)
    for instruction in builder.info.splits["train"].file_instructions:
        count = sum(1 for _ in tf.data.TFRecordDataset(instruction.filename))
        with tf.io.TFRecordWriter(instruction.filename) as writer:
            for _ in range(count):
                writer.write(b"\x00garbage that is no tf.Example")
    batches = pipeline.make_dataset(
        tiny_config,
        "pretrain",
        split="train",
        data_dir=data_dir,
        batch_size_per_host=4,
        seed=1,
        process_index=0,
        process_count=1,
        start_step=0,
    )
    with pytest.raises(
        batching.CorruptDataError,
        match=rf"^dataset '{tiny_config.dataset}' \(train\): no readable record in 10 "
        r"consecutive batches of 4 \(40 records failed to parse or decode, from step 0 on\)",
    ):
        next(batches)


def _interleave_parallelism(dataset):
    """(cycle_length, num_parallel_calls) of every parallel interleave in `dataset`'s graph."""
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(
        tf.raw_ops.DatasetToGraphV2(input_dataset=dataset._variant_tensor).numpy()
    )
    nodes = {node.name: node for node in graph.node}

    def constant(name):
        return int(tf.make_ndarray(nodes[name.split(":")[0]].attr["value"].tensor))

    found = []
    for node in graph.node:
        if node.op.startswith("ParallelInterleaveDataset"):
            # Inputs: input_dataset, other_arguments..., cycle_length, block_length,
            # buffer_output_elements, prefetch_input_elements, num_parallel_calls (V4).
            cycle, _, _, _, parallel = node.input[-5:]
            found.append((constant(cycle), constant(parallel)))
    return found


@pytest.mark.parametrize("requested, expected", [(0, len(os.sched_getaffinity(0))), (3, 3)])
def test_records_are_decoded_at_a_fixed_parallelism_not_an_autotuned_one(requested, expected):
    # With an AUTOTUNE parallelism (-1) in the pipeline, deleting its iterator after the CPU had
    # been busy blocked for 27-38 s, at the end of every training run and evaluation pass
    # (data_pipeline/input_config.py, InputConfig.num_parallel_calls).
    records = tf.data.Dataset.range(8).map(lambda i: tf.strings.as_string(i)).enumerate()
    dataset = marking_corrupt_records(
        records,
        lambda position, record: {"x": tf.strings.length(record), "_position": position},
        num_parallel_calls=requested,
    )
    assert _interleave_parallelism(dataset) == [(expected, expected)]
    assert [int(e["x"]) for e in dataset.as_numpy_iterator()] == [1] * 8  # in order, all kept
