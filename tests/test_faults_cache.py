"""Fault 2: a codec cache entry copied over another clip's entry must not be used."""
import logging
import shutil

import numpy as np
import pytest

from eval_encoder.codec import Selector, make_options
from eval_encoder.codec import cache as cache_mod
from eval_encoder.codec.select import FLAG_CACHE_RECOMPUTED, Selection
from eval_encoder.codec.synthetic import moving_square, write_video

S, P = 56, 14


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache_clips")
    paths = []
    for i, velocity in enumerate([(0.0, 2.0), (2.0, 0.0)]):
        scene = moving_square(frames=16, height=64, width=80, size=20, velocity=velocity, seed=i)
        paths.append(write_video(str(root / f"c{i}.mp4"), scene.frames))
    return paths


def _selector(cache_dir, **kw):
    opts = make_options("clean", K_keep=40, patch_size=P, cache_dir=str(cache_dir), **kw)
    return Selector(16, S, opts)


def _entry(sel, path):
    return cache_mod.cache_path(sel.opts.cache_dir, cache_mod.cache_key(path, sel.params))


def test_an_entry_copied_over_another_clips_is_reported_and_recomputed(two_clips, tmp_path,
                                                                       caplog):
    a, b = two_clips
    sel = _selector(tmp_path)
    fresh_b = _selector(tmp_path / "other").load(b)[3]
    sel_a = sel.load(a)[3]
    assert not np.array_equal(sel_a.indices, fresh_b.indices)  # the clips select differently
    sel.load(b)
    shutil.copyfile(_entry(sel, a), _entry(sel, b))  # a's entry under b's name
    with caplog.at_level(logging.WARNING, logger="eval_encoder.codec"):
        again = sel.load(b)[3]
    key_a, key_b = (cache_mod.cache_key(p, sel.params) for p in (a, b))
    assert np.array_equal(again.indices, fresh_b.indices)  # not a's patches
    assert again.flags & FLAG_CACHE_RECOMPUTED  # counted in the record's flags
    assert "another clip's selection" in caplog.text
    assert key_a in caplog.text and key_b in caplog.text  # both keys named
    assert sel.load(b)[3].flags == fresh_b.flags  # the entry was rewritten with b's key


def test_the_key_and_parameter_hash_are_checked_on_read(tmp_path):
    file = str(tmp_path / "ab" / ("ab" + "0" * 62 + ".npy"))
    entry = Selection(np.arange(0, 40, 3, dtype=np.int64), flags=0)
    cache_mod.write_entry(file, entry, params="p" * 64)
    assert cache_mod.read_entry(file, entry.indices.size, 64, params="p" * 64) is not None
    with pytest.raises(cache_mod.CacheKeyMismatch, match="other parameters"):
        cache_mod.read_entry(file, entry.indices.size, 64, params="q" * 64)
    with pytest.raises(cache_mod.CacheKeyMismatch, match="another clip's selection: key ab0"):
        cache_mod.read_entry(file, entry.indices.size, 64, key="cd" + "0" * 62)


def test_an_old_version_entry_is_treated_as_damaged(two_clips, tmp_path, caplog):
    a, _ = two_clips
    sel = _selector(tmp_path)
    good = sel.load(a)[3]
    file = _entry(sel, a)
    # a version-1 entry: [MAGIC, 1, flags, n, crc, indices] with no key inside
    idx = good.indices.astype(np.int64)
    old = np.concatenate([[cache_mod.MAGIC, 1, good.flags, idx.size, 0], idx]).astype(np.int64)
    with open(file, "wb") as fh:
        fh.write(cache_mod._npy_bytes(old))
    again = sel.load(a)[3]
    assert again.flags & FLAG_CACHE_RECOMPUTED and np.array_equal(again.indices, good.indices)
    assert "version 1" in caplog.text
    assert sel.lookup(a)[0] is not None  # rewritten in the current version
