"""``prepare``: each official annotation format, generated in miniature, prepares end to end
into a data root on which ``check`` passes; absent videos are listed, never dropped silently."""
import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from eval_encoder.codec.synthetic import moving_square, write_video
from eval_encoder.prepare.check import main as check_main
from eval_encoder.prepare.cli import main as prepare_main
from eval_encoder.video.manifest import load_card

FPS, FRAMES = 8, 24  # 3 s clips


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One tiny H.264 clip and one VP9 clip (SSv2 ships .webm) to copy under official names."""
    folder = tmp_path_factory.mktemp("clips")
    frames = moving_square(frames=FRAMES, height=32, width=32, size=8).frames
    return {".mp4": write_video(str(folder / "c.mp4"), frames, rate=FPS),
            ".webm": write_video(str(folder / "c.webm"), frames, codec="libvpx-vp9", rate=FPS)}


def place(clips, videos: Path, *names: str) -> None:
    """Copy the clip of the right container to each relative name under ``videos``."""
    for name in names:
        path = videos / name
        path.parent.mkdir(parents=True, exist_ok=True)
        source = clips[".webm"] if name.endswith(".webm") else clips[".mp4"]
        shutil.copy(source, path)


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_csv(path: Path, header, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def prepare(capsys, target, ann, videos, out, *extra):
    rc = prepare_main([target, "--annotations", str(ann), "--videos", str(videos),
                       "--out", str(out), *extra])
    return rc, capsys.readouterr()


def manifest(out: Path, dataset: str, split: str):
    card = load_card(dataset)
    name = card.train_manifest if split == "train" else card.val_manifest
    return (out / dataset / name).read_text(encoding="utf-8").splitlines()


def report(out: Path, dataset: str) -> dict:
    return json.loads((out / dataset / "prepare_report.json").read_text())


def check_ok(out: Path, dataset: str) -> dict:
    data = json.loads((out / dataset / "check_report.json").read_text())
    assert data["ok"], data["problems"]
    return data


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from eval_encoder.demo import save_tiny_encoder

    return save_tiny_encoder(tmp_path_factory.mktemp("tiny"))


def trains(out: Path, dataset: str, weights: Path, monkeypatch) -> dict:
    """One probe epoch on the prepared data root: the record is complete and every
    validation clip (or segment) is scored."""
    from eval_encoder.demo import probe_command
    from eval_encoder.probe.run import main as probe_main

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    report = out.parent / f"report_{dataset}"
    cmd = probe_command(out, weights, report, nproc=1,
                        extra=["--dataset", dataset, "--default_epoch", "1", "--batch_size", "2",
                               "--default_lr_list", "0.001", "--num_frames", "4"])
    assert probe_main(cmd[2:]) == 0
    (path,) = (report / "runs" / dataset).glob("*.json")
    record = json.loads(path.read_text())
    val = record["samples"]["val"]
    assert record["status"] == "complete" and val["scored"] == val["expected"] > 0
    return record


def test_ssv2(clips, tmp_path, capsys, weights, monkeypatch):
    ann, videos, out = tmp_path / "ann", tmp_path / "dl" / "videos", tmp_path / "root"
    templates = [f"Moving [something] {i} times" for i in range(174)]
    write_json(ann / "something-something-v2-labels.json",
               {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(templates)})
    write_json(ann / "something-something-v2-train.json",
               [{"id": "1", "label": "moving a cup", "template": templates[5], "placeholders": ["cup"]},
                {"id": "2", "template": templates[0]}, {"id": "3", "template": templates[7]}])
    write_json(ann / "something-something-v2-validation.json",
               [{"id": "10", "template": templates[173]}, {"id": "11", "template": templates[5]}])
    write_json(ann / "something-something-v2-test.json", [{"id": "99"}])
    place(clips, videos, "1.webm", "2.webm", "10.webm", "11.webm")
    rc, io = prepare(capsys, "ssv2", ann, videos, out)
    assert rc == 0, io.err
    assert manifest(out, "ssv2", "train") == ["videos/1.webm,5", "videos/2.webm,0"]
    assert manifest(out, "ssv2", "val") == ["videos/10.webm,173", "videos/11.webm,5"]
    assert (out / "ssv2" / "videos").resolve() == videos.resolve()
    classes = (out / "ssv2" / "classes.csv").read_text().splitlines()
    assert classes[0] == "index,name" and classes[6] == "5,Moving something 5 times"
    assert len(classes) == 175
    rep = report(out, "ssv2")
    assert rep["splits"]["train"]["absent_videos"] == ["3"]
    assert rep["splits"]["train"]["absent_lines"] == 1
    assert "1 annotated videos absent on disk, 1 lines left out" in io.out
    assert check_ok(out, "ssv2")["histograms"]["codec"] == {"vp9": 4}
    trains(out, "ssv2", weights, monkeypatch)


def test_diving48(clips, tmp_path, capsys, weights, monkeypatch):
    ann, videos, out = tmp_path / "ann", tmp_path / "videos", tmp_path / "root"
    write_json(ann / "Diving48_vocab.json", [["Back", f"{i}som", "NoTwis", "PIKE"] for i in range(48)])
    write_json(ann / "Diving48_V2_train.json",
               [{"vid_name": "-mmq0PT-u8k_00155", "label": 0, "start_frame": 0, "end_frame": 82},
                {"vid_name": "a_00001", "label": 47, "start_frame": 0, "end_frame": 40}])
    write_json(ann / "Diving48_V2_test.json", [{"vid_name": "b_00002", "label": 3}])
    write_json(ann / "Diving48_train.json", [{"vid_name": "v1 file, not read", "label": 0}])
    place(clips, videos, "-mmq0PT-u8k_00155.mp4", "a_00001.mp4", "b_00002.mp4")
    rc, io = prepare(capsys, "diving48", ann, videos, out)
    assert rc == 0, io.err
    assert manifest(out, "diving48", "train") == ["videos/-mmq0PT-u8k_00155.mp4,0",
                                                  "videos/a_00001.mp4,47"]
    assert manifest(out, "diving48", "val") == ["videos/b_00002.mp4,3"]
    assert "1,Back_1som_NoTwis_PIKE" in (out / "diving48" / "classes.csv").read_text()
    check_ok(out, "diving48")
    trains(out, "diving48", weights, monkeypatch)


def test_hmdb51(clips, tmp_path, capsys, weights, monkeypatch):
    ann, videos, out = tmp_path / "testTrainMulti_7030_splits", tmp_path / "hmdb", tmp_path / "root"
    classes = sorted(["brush_hair", "cartwheel"] + [f"class{i:02d}" for i in range(49)])
    ann.mkdir()
    for name in classes:
        (ann / f"{name}_test_split1.txt").write_text(f"{name}_x_0.avi 0 \r\n")
        (ann / f"{name}_test_split2.txt").write_text(f"{name}_y_0.avi 1 \r\n")
    (ann / "brush_hair_test_split1.txt").write_text(
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \r\nApril_09_brush_hair_u_nm_np1_ba_goo_1.avi 2 \r\n"
        "April_09_brush_hair_u_nm_np1_ba_goo_2.avi 0 \r\n")
    (ann / "cartwheel_test_split1.txt").write_text("(Cartwheel)_Tutorial_cartwheel_f_cm_np1_ba_med_1.avi 1\n")
    place(clips, videos, "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
          "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_1.avi",
          "cartwheel/(Cartwheel)_Tutorial_cartwheel_f_cm_np1_ba_med_1.avi")
    rc, io = prepare(capsys, "hmdb51", ann, videos, out)
    assert rc == 0, io.err
    assert manifest(out, "hmdb51", "train") == [
        "videos/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi,0",
        "videos/cartwheel/(Cartwheel)_Tutorial_cartwheel_f_cm_np1_ba_med_1.avi,1"]
    assert manifest(out, "hmdb51", "val") == ["videos/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_1.avi,0"]
    assert report(out, "hmdb51")["skipped"]["not in split 1 (id 0)"]["count"] == 50
    check_ok(out, "hmdb51")
    trains(out, "hmdb51", weights, monkeypatch)


@pytest.mark.parametrize("dataset", ["k400", "k600", "k700"])
def test_kinetics_names_and_layouts(clips, tmp_path, capsys, dataset, weights, monkeypatch):
    ann, videos, out = tmp_path / "ann", tmp_path / "videos", tmp_path / "root"
    n = load_card(dataset).num_classes
    labels = [f"class {i:03d}" for i in range(n)]
    write_csv(ann / "train.csv", ["label", "youtube_id", "time_start", "time_end", "split", "is_cc"],
              [[label, f"yt{i:05d}", 10, 20, "train", 0] for i, label in enumerate(labels)])
    write_csv(ann / "validate.csv", ["label", "youtube_id", "time_start", "time_end", "split"],
              [["class 002", "val-a", 0, 10, "validate"], ["class 001", "val_b", 5, 15, "validate"]])
    write_csv(ann / "test.csv", ["youtube_id", "time_start", "time_end", "split"], [["t", 0, 10, "test"]])
    # the three layouts met in downloads: padded name flat, class folder, id only + other extension
    place(clips, videos, "yt00000_000010_000020.mp4", "train/class 001/yt00001_000010_000020.mp4",
          "yt00002.mkv", "val/val-a_000000_000010.mp4", "val/val_b_5_15.mp4")
    rc, io = prepare(capsys, dataset, ann, videos, out)
    assert rc == 0, io.err
    assert manifest(out, dataset, "train") == [
        "videos/yt00000_000010_000020.mp4,0", "videos/train/class 001/yt00001_000010_000020.mp4,1",
        "videos/yt00002.mkv,2"]
    assert manifest(out, dataset, "val") == ["videos/val/val-a_000000_000010.mp4,2",
                                             "videos/val/val_b_5_15.mp4,1"]
    rep = report(out, dataset)
    assert rep["splits"]["train"]["absent_videos_count"] == n - 3
    assert f"{n - 3} annotated videos absent" in io.out
    check_ok(out, dataset)
    trains(out, dataset, weights, monkeypatch)


def test_ucf101(clips, tmp_path, capsys, weights, monkeypatch):
    ann, videos, out = tmp_path / "ucfTrainTestlist", tmp_path / "UCF-101", tmp_path / "root"
    names = ["ApplyEyeMakeup", "HandstandPushups"] + [f"Class{i:03d}" for i in range(99)]
    ann.mkdir()
    (ann / "classInd.txt").write_text("".join(f"{i + 1} {n}\r\n" for i, n in enumerate(names)))
    (ann / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
                                         "HandstandPushups/v_HandStandPushups_g08_c01.avi 2\r\n")
    (ann / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n"
                                        "HandstandPushups/v_HandStandPushups_g01_c01.avi\r\n")
    place(clips, videos, "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
          "HandstandPushups/v_HandStandPushups_g08_c01.avi",
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "HandstandPushups/v_HandStandPushups_g01_c01.avi")
    rc, io = prepare(capsys, "ucf101", ann, videos, out)
    assert rc == 0, io.err
    assert manifest(out, "ucf101", "val") == ["videos/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi,0",
                                              "videos/HandstandPushups/v_HandStandPushups_g01_c01.avi,1"]
    check_ok(out, "ucf101")
    trains(out, "ucf101", weights, monkeypatch)


EPIC_HEADER = ["narration_id", "participant_id", "video_id", "narration_timestamp",
               "start_timestamp", "stop_timestamp", "start_frame", "stop_frame", "narration",
               "verb", "verb_class", "noun", "noun_class", "all_nouns", "all_noun_classes"]


def epic_row(nid, person, vid, start, stop, verb, noun):
    return [nid, person, vid, "00:00:00.00", "00:00:00.10", "00:00:01.00", start, stop,
            "take cup", "take", verb, "cup", noun, "['cup']", f"[{noun}]"]


def test_epic_both_datasets_as_frame_segments(clips, tmp_path, capsys, weights, monkeypatch):
    ann, videos, out = tmp_path / "epic-kitchens-100-annotations", tmp_path / "EPIC-KITCHENS", tmp_path / "root"
    write_csv(ann / "EPIC_100_train.csv", EPIC_HEADER,
              [epic_row("P01_01_0", "P01", "P01_01", 1, 17, 0, 10),
               epic_row("P01_01_1", "P01", "P01_01", 5, 24, 96, 299),
               epic_row("P09_01_0", "P09", "P09_01", 1, 20, 3, 4)])  # P09 not downloaded
    write_csv(ann / "EPIC_100_validation.csv", EPIC_HEADER,
              [epic_row("P02_03_0", "P02", "P02_03", 2, 22, 1, 2)])
    write_csv(ann / "EPIC_100_verb_classes.csv", ["id", "key", "instances", "category"],
              [[i, f"verb{i}", "[]", "x"] for i in range(97)])
    write_csv(ann / "EPIC_100_noun_classes.csv", ["id", "key", "instances", "category"],
              [[i, f"noun{i}", "[]", "x"] for i in range(300)])
    # the official layout for one video, a flat lower-case .mp4 for the other
    place(clips, videos, "P01/videos/P01_01.MP4", "P02_03.mp4")
    rc, io = prepare(capsys, "epic", ann, videos, out)
    assert rc == 0, io.err
    assert manifest(out, "epic_verb", "train") == ["videos/P01/videos/P01_01.MP4,0,0f,17f",
                                                   "videos/P01/videos/P01_01.MP4,96,4f,24f"]
    assert manifest(out, "epic_noun", "train") == ["videos/P01/videos/P01_01.MP4,10,0f,17f",
                                                   "videos/P01/videos/P01_01.MP4,299,4f,24f"]
    assert manifest(out, "epic_noun", "val") == ["videos/P02_03.mp4,2,1f,22f"]
    assert report(out, "epic_verb")["splits"]["train"]["absent_videos"] == ["P09_01"]
    check_ok(out, "epic_verb")
    check_ok(out, "epic_noun")
    trains(out, "epic_noun", weights, monkeypatch)
    # one dataset alone, into a fresh root
    rc, io = prepare(capsys, "epic_noun", ann, videos, tmp_path / "root2")
    assert rc == 0 and not (tmp_path / "root2" / "epic_verb").exists()


def test_epic_without_class_files_counts_from_rows(tmp_path, capsys):
    ann, videos = tmp_path / "ann", tmp_path / "videos"
    videos.mkdir()
    write_csv(ann / "EPIC_100_train.csv", EPIC_HEADER, [epic_row("a", "P01", "P01_01", 1, 17, 5, 10)])
    write_csv(ann / "EPIC_100_validation.csv", EPIC_HEADER, [epic_row("b", "P01", "P01_02", 1, 17, 5, 10)])
    rc, io = prepare(capsys, "epic_verb", ann, videos, tmp_path / "root")
    assert rc == 2 and "6 classes" in io.err and "num_classes: 97" in io.err


CHARADES_HEADER = ["id", "subject", "scene", "quality", "relevance", "verified", "script",
                   "objects", "descriptions", "actions", "length"]


def charades_row(vid, actions):
    return [vid, "S1", "Kitchen", 6, 7, "Yes", "a script", "cup", "a description", actions, 3.0]


def charades_files(ann: Path):
    (ann / "Charades_v1_classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (ann / "Charades_v1_classes.txt").write_text("".join(f"c{i:03d} Class number {i}\n" for i in range(157)))
    write_csv(ann / "CharadesEgo_v1_train_only1st.csv", CHARADES_HEADER,
              [charades_row("AAAEGO", "c092 0.50 2.50;c147 0.00 1.20;c092 0.50 2.50"),
               charades_row("BBBEGO", ""), charades_row("CCCEGO", "c001 1.0 1.0;c002 0.1 2.9")])
    write_csv(ann / "CharadesEgo_v1_test_only1st.csv", CHARADES_HEADER,
              [charades_row("DDDEGO", "c156 0.00 2.90")])
    write_csv(ann / "CharadesEgo_v1_train_only3rd.csv", CHARADES_HEADER, [charades_row("AAA", "c003 0 2")])
    write_csv(ann / "CharadesEgo_v1_test_only3rd.csv", CHARADES_HEADER, [charades_row("DDD", "c004 0 2")])


def test_charadesego_first_person_segments_in_seconds(clips, tmp_path, capsys, weights, monkeypatch):
    ann, videos, out = tmp_path / "CharadesEgo", tmp_path / "CharadesEgo_v1_480", tmp_path / "root"
    charades_files(ann)
    place(clips, videos, "AAAEGO.mp4", "BBBEGO.mp4", "CCCEGO.mp4", "DDDEGO.mp4", "AAA.mp4", "DDD.mp4")
    rc, io = prepare(capsys, "charadesego", ann, videos, out)
    assert rc == 0, io.err
    assert manifest(out, "charadesego", "train") == [
        "videos/AAAEGO.mp4,92,0.5,2.5", "videos/AAAEGO.mp4,147,0.0,1.2", "videos/CCCEGO.mp4,2,0.1,2.9"]
    assert manifest(out, "charadesego", "val") == ["videos/DDDEGO.mp4,156,0.0,2.9"]
    rep = report(out, "charadesego")
    assert rep["options"] == {"view": "1st", "overlap": "keep"}
    assert {r: s["count"] for r, s in rep["skipped"].items()} == {
        "identical action triple written once": 1, "video without actions": 1,
        "segment end not after start": 1}
    data = check_ok(out, "charadesego")
    trains(out, "charadesego", weights, monkeypatch)
    assert len(data["splits"]["train"]["short"]) == 1  # 1.2 s x 8 fps < 16 frames, listed


def test_charadesego_options(clips, tmp_path, capsys):
    ann, videos = tmp_path / "CharadesEgo", tmp_path / "videos"
    charades_files(ann)
    place(clips, videos, "AAAEGO.mp4", "CCCEGO.mp4", "DDDEGO.mp4", "AAA.mp4", "DDD.mp4")
    rc, io = prepare(capsys, "charadesego", ann, videos, tmp_path / "drop", "--overlap", "drop")
    assert rc == 0, io.err
    assert manifest(tmp_path / "drop", "charadesego", "train") == ["videos/CCCEGO.mp4,2,0.1,2.9"]
    rc, io = prepare(capsys, "charadesego", ann, videos, tmp_path / "third", "--view", "3rd")
    assert rc == 0, io.err
    assert manifest(tmp_path / "third", "charadesego", "val") == ["videos/DDD.mp4,4,0.0,2.0"]


def perception_video(split, actions, frames=FRAMES):
    return {"metadata": {"split": split, "num_frames": frames, "frame_rate": FPS, "video_id": "x"},
            "action_localisation": [{"id": i, "label": f"action {label}", "label_id": label,
                                     "timestamps": [s, e], "frame_ids": [0, 1], "parent_objects": []}
                                    for i, (label, s, e) in enumerate(actions)]}


def test_perception_test_segments_from_microseconds(clips, tmp_path, capsys, weights, monkeypatch):
    ann, videos, out = tmp_path / "ann", tmp_path / "videos", tmp_path / "root"
    every = [(i, 0, 100) for i in range(63)]  # names every class once (absent video)
    write_json(ann / "action_localisation_train.json", {
        "video_1": perception_video("train", [(3, 0, 2_500_000), (62, 1_000_000, 2_966_666)]),
        "video_9": perception_video("train", every, frames=2400)})
    write_json(ann / "action_localisation_valid.json", {
        "video_2": perception_video("valid", [(0, 500_000, 2_500_000)]),
        "video_3": perception_video("valid", [])})
    place(clips, videos, "video_1.mp4", "video_2.mp4", "video_3.mp4")
    rc, io = prepare(capsys, "perception_test", ann, videos, out)
    assert rc == 0, io.err
    assert manifest(out, "perception_test", "train") == ["videos/video_1.mp4,3,0.0,2.5",
                                                         "videos/video_1.mp4,62,1.0,2.966666"]
    assert manifest(out, "perception_test", "val") == ["videos/video_2.mp4,0,0.5,2.5"]
    rep = report(out, "perception_test")
    assert rep["splits"]["train"]["absent_lines"] == 63
    assert rep["skipped"]["video without actions"]["count"] == 1
    assert "2,action 2" in (out / "perception_test" / "classes.csv").read_text()
    check_ok(out, "perception_test")
    trains(out, "perception_test", weights, monkeypatch)


def test_perception_test_millisecond_timestamps_are_refused(tmp_path, capsys):
    ann, videos = tmp_path / "ann", tmp_path / "videos"
    videos.mkdir()
    write_json(ann / "all_train.json", {f"video_{i}": perception_video("train", [(i, 0, 2_500)])
                                        for i in range(63)})
    rc, io = prepare(capsys, "perception_test", ann, videos, tmp_path / "root")
    assert rc == 2 and "look like milliseconds" in io.err


def test_class_count_mismatch_names_both_numbers(tmp_path, capsys):
    ann, videos = tmp_path / "ann", tmp_path / "videos"
    videos.mkdir()
    write_json(ann / "labels.json", {f"t{i}": str(i) for i in range(170)})
    write_json(ann / "train.json", [{"id": "1", "template": "t0"}])
    write_json(ann / "validation.json", [{"id": "2", "template": "t1"}])
    rc, io = prepare(capsys, "ssv2", ann, videos, tmp_path / "root")
    assert rc == 2 and "170 classes" in io.err and "num_classes: 174" in io.err
    assert not (tmp_path / "root").exists()  # nothing written before the counts agree


def test_errors_name_the_file_or_option(tmp_path, capsys):
    ann, videos = tmp_path / "ann", tmp_path / "videos"
    videos.mkdir()
    write_json(ann / "a" / "labels.json", {})
    write_json(ann / "b" / "labels.json", {})
    rc, io = prepare(capsys, "ssv2", ann, videos, tmp_path / "root")
    assert rc == 2 and "several files could be the SSv2 label map" in io.err
    rc, io = prepare(capsys, "ssv2", ann, videos, tmp_path / "root", "--view", "3rd")
    assert rc == 2 and "--view applies to charadesego, not ssv2" in io.err
    rc, io = prepare(capsys, "ssv3", ann, videos, tmp_path / "root")
    assert rc == 2 and "Did you mean 'ssv2'" in io.err
    (ann / "ucf").mkdir()
    (ann / "ucf" / "classInd.txt").write_text("1 A\n")
    (ann / "ucf" / "trainlist01.txt").write_text("A/v_A_g01_c01.avi 2\n")
    (ann / "ucf" / "testlist01.txt").write_text("A/v_A_g02_c01.avi\n")
    rc, io = prepare(capsys, "ucf101", ann / "ucf", videos, tmp_path / "root")
    assert rc == 2 and "trainlist01.txt:1: label 2 disagrees with folder 'A'" in io.err


def test_videos_inside_the_data_root_need_no_link(clips, tmp_path, capsys):
    ann, out = tmp_path / "ann", tmp_path / "root"
    videos = out / "raw" / "diving"
    write_json(ann / "Diving48_vocab.json", [f"c{i}" for i in range(48)])
    write_json(ann / "Diving48_V2_train.json", [{"vid_name": "a", "label": 1}])
    write_json(ann / "Diving48_V2_test.json", [{"vid_name": "b", "label": 2}])
    place(clips, videos, "a.mp4", "b.mp4")
    rc, io = prepare(capsys, "diving48", ann, videos, out)
    assert rc == 0, io.err
    assert manifest(out, "diving48", "train") == ["../raw/diving/a.mp4,1"]
    assert not (out / "diving48" / "videos").exists()
    # a link already there, to another folder, is not replaced
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(other, out / "diving48" / "videos")
    rc, io = prepare(capsys, "diving48", ann, videos, out, "--link")
    assert rc == 2 and "already links to" in io.err


def test_check_command_on_a_prepared_root(clips, tmp_path, capsys):
    ann, videos, out = tmp_path / "ann", tmp_path / "videos", tmp_path / "root"
    write_json(ann / "Diving48_vocab.json", [f"c{i}" for i in range(48)])
    write_json(ann / "Diving48_V2_train.json", [{"vid_name": "a", "label": 1}])
    write_json(ann / "Diving48_V2_test.json", [{"vid_name": "b", "label": 2}])
    place(clips, videos, "a.mp4", "b.mp4")
    assert prepare(capsys, "diving48", ann, videos, out, "--no_check")[0] == 0
    assert not (out / "diving48" / "check_report.json").exists()
    rc = check_main(["--data_root", str(out), "--dataset", "diving48", "--json", str(tmp_path / "c.json")])
    printed = capsys.readouterr().out
    assert rc == 0 and "OK" in printed and "h264: 2" in printed
    assert json.loads((tmp_path / "c.json").read_text())["splits"]["val"]["per_class"]["2 c2"] == 1


@pytest.mark.slow
def test_probe_runs_on_a_prepared_two_field_dataset(tmp_path, capsys, monkeypatch):
    """UCF101-format annotations over the generated demo clips -> prepare -> one probe epoch."""
    from eval_encoder.demo import generate_dataset, probe_command, save_tiny_encoder
    from eval_encoder.probe.run import main as probe_main

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    generate_dataset(tmp_path / "gen", "demo", train_per_class=1, val_clips=3, seed=0)
    ann, videos, out = tmp_path / "ucfTrainTestlist", tmp_path / "UCF-101", tmp_path / "root"
    ann.mkdir()
    (ann / "classInd.txt").write_text("".join(f"{i + 1} C{i:03d}\n" for i in range(101)))
    lists = {"train": [], "val": []}
    for split in lists:
        for line in (tmp_path / "gen" / "demo" / f"{split}_new.csv").read_text().split():
            rel, label = line.split(",")
            name = f"C{int(label):03d}/v_C{int(label):03d}_{Path(rel).stem}.avi"
            place({".mp4": str(tmp_path / "gen" / "demo" / rel)}, videos, name)
            lists[split].append(f"{name} {int(label) + 1}" if split == "train" else name)
    (ann / "trainlist01.txt").write_text("\n".join(lists["train"]) + "\n")
    (ann / "testlist01.txt").write_text("\n".join(lists["val"]) + "\n")
    assert prepare(capsys, "ucf101", ann, videos, out)[0] == 0
    cmd = probe_command(out, save_tiny_encoder(tmp_path), tmp_path / "report", nproc=1,
                        extra=["--dataset", "ucf101", "--default_epoch", "1", "--default_lr_list", "0.001"])
    assert probe_main(cmd[2:]) == 0
    (record_path,) = (tmp_path / "report" / "runs" / "ucf101").glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["samples"]["val"]["expected"] == 3 and record["samples"]["val"]["scored"] == 3


def test_data_root_inside_the_videos_folder_does_not_loop(clips, tmp_path, capsys):
    ann, videos = tmp_path / "ann", tmp_path / "videos"
    out = videos / "prepared"  # its videos link points back up at --videos
    write_json(ann / "Diving48_vocab.json", [f"c{i}" for i in range(48)])
    write_json(ann / "Diving48_V2_train.json", [{"vid_name": "a", "label": 1}])
    write_json(ann / "Diving48_V2_test.json", [{"vid_name": "b", "label": 2}])
    place(clips, videos, "a.mp4", "b.mp4")
    for _ in range(2):  # the second run walks --videos with the link inside it
        rc, io = prepare(capsys, "diving48", ann, videos, out, "--link")
        assert rc == 0, io.err
        assert manifest(out, "diving48", "train") == ["videos/a.mp4,1"]


def test_a_class_subset_is_prepared_with_ones_own_card_and_trains_past_a_large_batch(
        clips, tmp_path, capsys, weights, monkeypatch):
    """A newcomer's small data: three classes of UCF101, 4 training clips each. The shipped
    card (101 classes) refuses them and says how to use one's own card; under the paper
    protocol the card's batch of 16 leaves no full step and the error names the ways out."""
    from eval_encoder.demo import probe_command
    from eval_encoder.probe.run import main as probe_main

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "EVAL_ENCODER_DATASETS"):
        monkeypatch.delenv(var, raising=False)
    ann, videos, out = tmp_path / "ucfTrainTestlist", tmp_path / "UCF-101", tmp_path / "root"
    names = ["ApplyEyeMakeup", "Biking", "Diving"]
    ann.mkdir()
    (ann / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    train = [f"{n}/v_{n}_g{g:02d}_c01.avi" for n in names for g in range(8, 12)]
    val = [f"{n}/v_{n}_g01_c01.avi" for n in names]
    (ann / "trainlist01.txt").write_text("".join(f"{p} {names.index(p.split('/')[0]) + 1}\n"
                                                 for p in train))
    (ann / "testlist01.txt").write_text("".join(f"{p}\n" for p in val))
    place(clips, videos, *train, *val)
    rc, io = prepare(capsys, "ucf101", ann, videos, out)
    assert rc == 2 and "the annotations give 3 classes" in io.err
    assert "EVAL_ENCODER_DATASETS=my_cards" in io.err and "num_classes: 3" in io.err
    assert not out.exists()
    cards = tmp_path / "my_cards"
    cards.mkdir()
    shipped = load_card("ucf101")
    (cards / "ucf101.yaml").write_text(Path(shipped.path).read_text().replace(
        "num_classes: 101", "num_classes: 3").replace('version: "1"', 'version: "3-class"'))
    monkeypatch.setenv("EVAL_ENCODER_DATASETS", str(cards))
    rc, io = prepare(capsys, "ucf101", ann, videos, out)
    assert rc == 0, io.err
    report_dir = tmp_path / "report"
    cmd = probe_command(out, weights, report_dir, nproc=1,
                        extra=["--dataset", "ucf101", "--default_epoch", "1", "--batch_size",
                               "16", "--default_lr_list", "0.001", "--num_frames", "4"])
    assert probe_main(cmd[2:]) == 2  # paper: drop_last, floor(12 / 16) = 0 steps
    err = capsys.readouterr().err
    assert "floor(12/16) = 0 full steps" in err
    assert "--drop_last false" in err and "--protocol clean" in err
    assert not (report_dir / "runs").exists()  # a usage mistake, found from the manifest
    assert probe_main([*cmd[2:], "--drop_last", "false"]) == 0
    complete = [json.loads(p.read_text()) for p in (report_dir / "runs" / "ucf101").glob("*.json")]
    done = [r for r in complete if r["status"] == "complete"]
    assert len(done) == 1 and done[0]["dataset"]["version"] == "3-class"
    assert done[0]["batch"]["drop_last"] is False and done[0]["samples"]["train"]["expected"] == 12
