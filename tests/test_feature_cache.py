"""The feature store's round trip and the pooled feature cache: keys, hits, misses, several
writers, and damaged shards detected and computed again, never trusted."""
from __future__ import annotations

import logging

import pytest
import torch

from eval_encoder.features.cache import FeatureCache, cache_key, encoder_digest, view_folder
from eval_encoder.features.store import (
    FeatureStore,
    StoreError,
    read_sidecars,
    write_header,
    write_index,
    write_shard,
)

VAL = {"split": "val", "view": 0}
PIXELS = {"input_size": 224, "num_frames": 8}


def _rows(ids, label=0):
    return [{"clip": c, "label": label, "view": 0} for c in ids]


def test_the_store_round_trips(tmp_path):
    write_header(tmp_path, {"pool": "mean"})
    a, b = torch.randn(2, 4), torch.randn(3, 4)
    write_shard(tmp_path, "r00001-x", b, _rows(["c", "d", "e"], 1))
    write_shard(tmp_path, "r00000-x", a, _rows(["a", "b"]))
    assert write_index(tmp_path, [(c, 0) for c in "abcde"]) == 5
    store = FeatureStore(tmp_path)
    assert store.clips() == list("abcde") and len(store) == 5 and ("c", 0) in store
    assert torch.equal(store.get("d"), b[1]) and store.label("d") == 1
    x, y, ids = store.all()
    assert torch.equal(x, torch.cat([a, b])) and y.tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(StoreError, match="no features for clip 'z'"):
        store.get("z")
    with pytest.raises(StoreError, match="not a feature store"):
        FeatureStore(tmp_path / "shards")


def test_a_damaged_shard_is_refused_by_the_reader(tmp_path):
    write_header(tmp_path, {})
    write_shard(tmp_path, "r00000-x", torch.randn(2, 4), _rows(["a", "b"]))
    path = tmp_path / "shards" / "r00000-x.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="sha256 differs"):
        FeatureStore(tmp_path).get("a")
    path.write_bytes(bytes(data[:-3]))
    with pytest.raises(StoreError, match="bytes, its sidecar says"):
        FeatureStore(tmp_path).get("a")


def test_cache_keys_follow_weights_pixels_and_pool():
    key = cache_key("w1", PIXELS, "mean")
    assert key == cache_key("w1", dict(reversed(PIXELS.items())), "mean")
    assert len({key, cache_key("w2", PIXELS, "mean"), cache_key("w1", PIXELS, "cls"),
                cache_key("w1", dict(PIXELS, input_size=256), "mean")}) == 4
    with pytest.raises(ValueError, match="weights' identity"):
        cache_key("", PIXELS, "mean")
    assert view_folder({"split": "train", "view": 0, "epoch": 3, "seed": 1}) == \
        "epoch=3,seed=1,split=train,view=0"
    one, two = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    assert encoder_digest(one) == encoder_digest(one) != encoder_digest(two)


def test_lookup_store_miss_and_ranks(tmp_path):
    rank0 = FeatureCache(tmp_path, "w", PIXELS, "mean", rank=0)
    rank1 = FeatureCache(tmp_path, "w", PIXELS, "mean", rank=1)
    assert rank0.folder == tmp_path / "features" / rank0.key
    assert rank0.lookup(["a", "b"], VAL) is None  # nothing yet
    a, b = torch.randn(2, 8), torch.randn(2, 8)
    rank0.store(["a", "b"], VAL, a)
    rank1.store(["c", "d"], VAL, b)  # each rank its own shard
    assert len(read_sidecars(rank0.folder / view_folder(VAL))) == 2
    assert torch.equal(rank0.lookup(["d", "a"], VAL), torch.stack([b[1], a[0]]))
    assert rank0.lookup(["a", "e"], VAL) is None  # one missing: a miss
    train = {"split": "train", "view": 0, "epoch": 1, "seed": 1}
    assert rank0.lookup(["a"], train) is None  # another view, another folder
    other = FeatureCache(tmp_path, "w", PIXELS, "cls")
    assert other.lookup(["a"], VAL) is None  # another pool, another key


def test_a_damaged_shard_is_a_miss_and_computed_again(tmp_path, caplog):
    cache = FeatureCache(tmp_path, "w", PIXELS, "mean")
    feats = torch.randn(3, 8)
    cache.store(["a", "b", "c"], VAL, feats)
    (shard,) = (cache.folder / view_folder(VAL) / "shards").glob("*.safetensors")
    shard.write_bytes(shard.read_bytes()[:-5])  # a partial write
    fresh = FeatureCache(tmp_path, "w", PIXELS, "mean")
    with caplog.at_level(logging.WARNING, logger="eval_encoder.features"):
        assert fresh.lookup(["a"], VAL) is None
    assert "recomputing" in caplog.text
    assert list(shard.parent.glob("*.corrupt"))  # set aside
    fresh.store(["a", "b", "c"], VAL, feats)
    assert torch.equal(fresh.lookup(["c", "a"], VAL), feats[[2, 0]])
