"""Fault 9: run ids never collide and a record is never overwritten."""
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from eval_encoder.record import (SCHEMA, SCHEMA_VERSION, RecordExists, new_run_id, read_record,
                                 write_record)


def _record(run_id, top1=1.0):
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "run_id": run_id,
            "status": "complete", "dataset": {"name": "ucf101"}, "reported": {"top1": top1}}


def test_run_ids_carry_microseconds_and_64_random_bits():
    ids = [new_run_id("ucf101") for _ in range(20000)]
    assert len(set(ids)) == len(ids)
    assert re.fullmatch(r"\d{8}T\d{12}Z-ucf101-[0-9a-f]{16}", ids[0])


def test_an_existing_record_is_never_overwritten(tmp_path):
    path = write_record(_record("r1", 10.0), str(tmp_path))
    with pytest.raises(RecordExists, match="r1.json exists already: refusing to overwrite"):
        write_record(_record("r1", 99.0), str(tmp_path))
    assert read_record(str(path))["reported"]["top1"] == 10.0
    assert [p.name for p in path.parent.iterdir()] == ["r1.json"]  # no temporary left behind
    write_record(_record("r1", 99.0), str(tmp_path), replace=True)  # only when asked for
    assert read_record(str(path))["reported"]["top1"] == 99.0


def test_concurrent_writers_of_one_id_one_wins_the_file_is_whole(tmp_path):
    barrier = threading.Barrier(8)

    def write(n):
        barrier.wait()
        try:
            write_record(_record("same", float(n)), str(tmp_path))
            return n
        except RecordExists:
            return None

    with ThreadPoolExecutor(8) as pool:
        winners = [n for n in pool.map(write, range(8)) if n is not None]
    assert len(winners) == 1
    (path,) = (tmp_path / "runs" / "ucf101").iterdir()
    assert json.loads(path.read_text())["reported"]["top1"] == float(winners[0])


def test_a_failed_record_keeps_what_was_known():
    from eval_encoder.record import samples_at_failure

    assert samples_at_failure({}, {}, {}) == {}  # broke before reading the manifests
    skipped = {"train": {3: {"index": 3, "path": "/d/a.mp4", "reason": "bad"}}, "val": {}}
    got = samples_at_failure({"train": 10, "val": 4}, skipped, {})
    assert got == {"train": {"expected": 10, "skipped": [skipped["train"][3]]},
                   "val": {"expected": 4, "skipped": []}}
