import os

import numpy as np

from data_pipeline import decode_cache
from data_pipeline.media_decode import DecodedMedia, MediaSkipped


def test_an_entry_reads_back_what_was_saved_and_leaves_no_temporary_file(tmp_path):
    media = DecodedMedia(
        jpeg_frames=[b"\xff\xd8one", b"\xff\xd8two!"],
        height=4,
        width=6,
        audio=np.arange(-3, 4, dtype=np.int16),
        silent_audio=False,
    )
    entry = decode_cache.CacheEntry(str(tmp_path / "cache"), "videos/a clip.mp4")
    decode_cache.save(entry, media)
    loaded = decode_cache.load(entry)
    assert loaded.jpeg_frames == media.jpeg_frames
    assert (loaded.height, loaded.width, loaded.silent_audio) == (4, 6, False)
    np.testing.assert_array_equal(loaded.audio, media.audio)
    assert loaded.audio.dtype == np.int16
    skipped = decode_cache.CacheEntry(str(tmp_path / "cache"), "videos/empty.mp4")
    decode_cache.save_skip(skipped, MediaSkipped("empty_file", "0 bytes"))
    assert (decode_cache.load(skipped).reason, decode_cache.load(skipped).detail) == (
        "empty_file",
        "0 bytes",
    )
    assert sorted(os.listdir(tmp_path / "cache")) == sorted(
        os.path.basename(p) for p in (entry.media_path, skipped.skip_path)
    )
