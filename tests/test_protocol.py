"""The named protocols: resolution, overrides, what records and listings say, and a paper and a
clean run of the same demo recipe."""
from pathlib import Path

import pytest

from eval_encoder import listing, protocol
from eval_encoder.config import ConfigError
from eval_encoder.probe.args import parse_config
from eval_encoder.record import config_hash, read_record

README = Path(__file__).resolve().parents[1] / "results" / "README.md"


def test_default_is_the_paper_protocol_and_every_behaviour_is_filled():
    cfg = parse_config([])
    assert cfg.protocol == "paper"
    assert (cfg.round_pixels, cfg.brightness_mode, cfg.drop_last) == (True, "multiply", True)
    c = cfg.codec
    assert (c.codec_frame_ids, c.zero_frames, c.mv_floor, c.map_grid, c.topk_ties) == \
        ("trunc", "gop16", 1e-6, "pixel", "partition")
    assert cfg.sources["round_pixels"] == "protocol paper"
    assert protocol.departures(cfg) == {}


def _resolved(cfg, row):
    holder = cfg.codec if row.option.startswith("codec.") else cfg
    return getattr(holder, row.option.split(".")[-1])


@pytest.mark.parametrize("name", protocol.PROTOCOLS)
def test_every_protocol_gives_every_behaviour_its_value(name):
    """Each row's value under each protocol (None: the option keeps what the card, recipe or
    encoder gives it, here its default before the card is read)."""
    cfg = parse_config(["--protocol", name])
    for row in protocol.BEHAVIOURS:
        wanted = row.value(name, cfg.dataset)
        default = _resolved(parse_config(["--protocol", "paper"]), row) if wanted is None else wanted
        assert _resolved(cfg, row) == default, row.name
    assert protocol.departures(cfg) == {}


def test_clean_protocol_switches_every_behaviour_of_the_onevision_scripts():
    paper, clean = parse_config([]), parse_config(["--protocol", "clean"])
    switched = [r for r in protocol.BEHAVIOURS if r.values["paper"] != r.values["clean"]]
    assert [r.option.split(".")[-1] for r in switched] == [
        "round_pixels", "brightness_mode", "drop_last", "codec_frame_ids", "zero_frames",
        "mv_floor", "map_grid", "map_resolution", "topk_ties"]
    assert all(_resolved(paper, r) != _resolved(clean, r) for r in switched)
    assert config_hash(paper.to_dict()) != config_hash(clean.to_dict())


def test_every_row_has_a_value_and_a_description_per_protocol():
    for row in protocol.BEHAVIOURS:
        assert set(row.values) == set(row.does) == set(protocol.PROTOCOLS), row.name


@pytest.mark.parametrize("dataset, expected", [
    ("ssv2", (16, 4, 2, 20)), ("k400", (16, 4, 8, 20)), ("diving48", (32, 2, 4, 100))])
def test_vjepa2_takes_the_published_values_of_each_dataset(dataset, expected):
    """configs/eval/vitl/{ssv2,k400,diving48}.yaml: frames_per_clip, frame_step, num_segments,
    num_epochs; every one: 3 views, resolution 256, 4 probe blocks."""
    cfg = parse_config(["--protocol", "vjepa2", "--dataset", dataset])
    assert (cfg.num_frames, cfg.frame_step, cfg.num_segments, cfg.default_epoch) == expected
    assert (cfg.num_spatial_crops, cfg.view_fusion, cfg.train_augment, cfg.input_size,
            cfg.eval_window, cfg.probe_size, cfg.smoothing, cfg.clip_grad) == \
        (3, "softmax", "vjepa2", 256, "random", 4, 0.0, 0.0)
    assert cfg.sources["num_segments"] == "protocol vjepa2"
    assert protocol.departures(cfg) == {}
    given = parse_config(["--protocol", "vjepa2", "--dataset", dataset, "--num_segments", "3"])
    assert given.num_segments == 3 and protocol.departures(given) == {"num_segments": 3}


def test_options_left_to_the_card_are_no_departure_under_paper():
    cfg = parse_config(["--input_size", "256", "--default_epoch", "3", "--num_frames", "16"])
    assert protocol.departures(cfg) == {}


def test_an_option_set_on_its_own_wins_and_is_reported():
    cfg = parse_config(["--round_pixels", "0", "--map_grid", "cell"])
    assert cfg.protocol == "paper" and cfg.round_pixels is False and cfg.codec.map_grid == "cell"
    assert protocol.departures(cfg) == {"round_pixels": False, "map_grid": "cell"}
    block = protocol.describe(cfg)
    assert block["name"] == "paper" and block["values"]["brightness_mode"] == "multiply"
    assert protocol.label({"protocol": block}) == "paper*"


def test_bad_values_from_a_recipe_name_the_option(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("brightness_mode: darker\n")
    with pytest.raises(ConfigError, match="--brightness_mode 'darker'"):
        parse_config(["--config", str(bad)])
    bad.write_text("protocol: published\n")
    with pytest.raises(ConfigError, match="--protocol 'published'"):
        parse_config(["--config", str(bad)])


def test_listing_prints_every_row_and_the_readme_holds_the_same_tables(capsys):
    assert listing.main(["protocol"]) == 0
    text = capsys.readouterr().out
    for row in (*protocol.BEHAVIOURS, *protocol.ALL_DEVIATIONS):
        assert row.name in text
    assert listing.main(["protocol", "--markdown"]) == 0
    tables = capsys.readouterr().out
    assert tables == protocol.markdown_tables()
    assert tables in README.read_text(encoding="utf-8"), \
        "results/README.md is out of date: paste `python -m eval_encoder ls protocol --markdown`"


def test_every_recipe_names_its_protocol():
    rows = listing.recipe_rows()
    assert rows and all(r.get("protocol") in protocol.PROTOCOLS for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["paper", "clean"])
def test_paper_and_clean_runs_of_the_demo_complete_and_say_so(name, tmp_path, monkeypatch):
    from eval_encoder.demo import generate, probe_command, save_tiny_encoder
    from eval_encoder.probe.run import main as probe_main

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    data, weights = generate(tmp_path), save_tiny_encoder(tmp_path)
    report = tmp_path / "report"
    cmd = probe_command(data, weights, report, nproc=1,
                        extra=["--default_epoch", "1", "--protocol", name])
    assert probe_main(cmd[2:]) == 0
    (path,) = (report / "runs").rglob("*.json")
    record = read_record(str(path))
    assert record["status"] == "complete" and record["protocol"]["name"] == name
    assert record["protocol"]["values"]["round_pixels"] is (name == "paper")
    assert record["protocol"]["departures"] == {}
    assert record["samples"]["val"]["scored"] == record["samples"]["val"]["expected"]


@pytest.mark.slow
def test_a_vjepa2_run_of_the_demo_completes_with_segments_and_views(tmp_path, monkeypatch):
    """V-JEPA 2's protocol on the demo: 2 segments of 4 frames at step 2, 3 views whose
    probabilities are averaged, its augmentation; the tiny /14 encoder at 224 px and one
    attention block (the V-JEPA 2 head is another change's) are departures."""
    from eval_encoder.demo import generate, probe_command, save_tiny_encoder
    from eval_encoder.probe.run import main as probe_main

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    data, weights = generate(tmp_path), save_tiny_encoder(tmp_path)
    report = tmp_path / "report"
    extra = ["--protocol", "vjepa2", "--default_epoch", "1", "--frame_step", "2",
             "--input_size", "224", "--probe_size", "1"]
    assert probe_main(probe_command(data, weights, report, nproc=1, extra=extra)[2:]) == 0
    (path,) = (report / "runs").rglob("*.json")
    record = read_record(str(path))
    assert record["status"] == "complete" and record["protocol"]["name"] == "vjepa2"
    assert record["protocol"]["departures"] == {"num_frames": 4, "frame_step": 2,
                                                "input_size": 224, "default_epoch": 1,
                                                "probe_size": 1,  # the demo's own grid:
                                                "default_lr_list": [0.001, 0.0001],
                                                "default_weight_decay": [0.0]}
    values = record["protocol"]["values"]
    assert (values["num_segments"], values["num_spatial_crops"], values["view_fusion"],
            values["train_augment"]) == (2, 3, "softmax", "vjepa2")
    assert record["compute"]["tokens_per_clip"] == 2 * 4 * 256
    assert record["compute"]["val_views_per_clip"] == 3
    assert record["samples"]["val"]["scored"] == record["samples"]["val"]["expected"]
