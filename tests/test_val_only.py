"""``--val_only``: given heads scored once on the validation split, without training, with the
logits of the modules built from the file, and a record that says where the heads came from."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from eval_encoder.demo import generate_dataset, save_tiny_encoder
from eval_encoder.probe import run as run_mod
from eval_encoder.probe import trainer as trainer_mod
from eval_encoder.probe.heads import build_head
from eval_encoder.probe.run import main as probe_main
from eval_encoder.record import read_record

WIDTH, CLASSES = 128, 4  # the tiny OneVision encoder's tokens; the demo's motion classes
HEAD = ["--probe_head", "vjepa2", "--probe_size", "2", "--probe_num_heads", "4"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("val_only")
    generate_dataset(out / "data", "demo", train_per_class=3, val_clips=7, seed=0)
    return out / "data", save_tiny_encoder(out)


def _flags(tiny, report, *extra):
    data, weights = tiny
    return ["--model_family", "sampling", "--model_name", "ov_encoder_tiny", "--model_weight",
            str(weights), "--dataset", "demo", "--data_root", str(data), "--num_frames", "2",
            "--batch_size", "4", "--dali_py_num_workers", "0", "--monitor_clips", "0",
            "--save_report", str(report), *extra]


def _records(report):
    return [read_record(str(p)) for p in sorted((report / "runs").rglob("*.json"))]


def _published_probe(path, heads=2):
    """A probe file as V-JEPA 2's eval.py saves it: DistributedDataParallel state_dicts (keys
    under ``module.``) of random heads, their optimisers' states, the epoch."""
    torch.manual_seed(5)
    states = []
    for _ in range(heads):
        module = build_head("vjepa2", WIDTH, CLASSES, depth=2, num_heads=4)
        with torch.no_grad():
            for p in module.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        states.append({f"module.{k}": v for k, v in module.state_dict().items()})
    opt = {"state": {}, "param_groups": [{"lr": 0.0, "mc_ref_lr": 0.005, "mc_warmup_steps": 0,
                                          "params": list(range(len(states[0])))}]}
    torch.save({"classifiers": states, "opt": [opt] * heads, "scaler": None, "epoch": 20,
                "batch_size": 4, "world_size": 64}, path)
    return states


def _module_of(state):
    module = build_head("vjepa2", WIDTH, CLASSES, depth=2, num_heads=4).eval()
    module.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return module


@pytest.fixture
def seen(monkeypatch):
    """Every (tokens, logits) the trainer's bank computes during the run."""
    calls = []
    bank = trainer_mod.bank_logits

    def recording(modules, tokens):
        logits = bank(modules, tokens)
        calls.append((tokens.detach().clone(), logits.detach().clone()))
        return logits

    monkeypatch.setattr(trainer_mod, "bank_logits", recording)
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    return calls


def test_a_published_probe_is_scored_with_the_logits_of_its_modules(tiny, tmp_path, seen):
    states = _published_probe(tmp_path / "latest.pt")
    report = tmp_path / "report"
    assert probe_main(_flags(tiny, report, "--val_only", "--probe_checkpoint",
                             str(tmp_path / "latest.pt"), *HEAD)) == 0
    (record,) = _records(report)
    assert record["status"] == "complete"
    source = record["val_only"]["heads_from"]
    assert source["format"] == "vjepa2 probe checkpoint" and source["epoch"] == 20
    assert source["heads"] == 2 and source["path"] == str((tmp_path / "latest.pt").resolve())
    assert [h["name"] for h in record["heads"]] == ["classifiers[0]", "classifiers[1]"]
    # nothing of a training that did not happen
    for absent in ("batch", "checkpoints", "resumed_from", "monitor"):
        assert absent not in record, absent
    assert set(record["samples"]) == {"val"} and set(record["encoder_passes"]) == {"val"}
    assert all(set(h) == {"name", "status", "top1", "top5"} for h in record["heads"])
    assert record["reported"]["selection"] == "val_only" and record["reported"]["epoch"] is None
    assert record["probe_head"]["kind"] == "vjepa2"
    assert record["probe_head"]["options"] == {"depth": 2, "num_heads": 4, "mlp_ratio": 4}
    assert record["config"]["val_only"] is True
    # the run's logits are the modules' built from the file, on the same tokens
    modules = [_module_of(s) for s in states]
    logits = []
    for tokens, got in seen:
        with torch.no_grad():
            want = torch.stack([m(tokens) for m in modules], dim=1)
        assert (got - want).abs().max().item() <= 1e-5
        logits.append(want)
    logits = torch.cat(logits)  # one view per clip, clips in order on one process
    assert logits.shape == (7, 2, CLASSES) and record["samples"]["val"]["scored"] == 7
    labels = np.load(report / "runs" / "demo" / record["predictions"]["file"])["label"]
    for j, head in enumerate(record["heads"]):
        top1 = 100.0 * float((logits[:, j].argmax(-1).numpy() == labels).mean())
        assert head["top1"] == pytest.approx(top1)
    best = [h["name"] for h in record["heads"]].index(record["reported"]["head"])
    probs = np.load(report / "runs" / "demo" / record["predictions"]["file"])["top5_prob"]
    want = logits[:, best].softmax(-1).sort(-1, descending=True).values[:, :CLASSES]
    assert np.allclose(probs, want.numpy(), atol=1e-6)


def test_our_checkpoint_scores_as_the_run_that_wrote_it(tiny, tmp_path, seen, monkeypatch):
    """A training run (checkpoints kept) and --val_only of its last checkpoint: the same
    numbers for every head."""
    monkeypatch.setattr(run_mod, "remove_checkpoints", lambda checkpointer: None)
    trained = tmp_path / "trained"
    grid = ["--default_lr_list", "1e-3", "1e-4", "--default_epoch", "1"]
    assert probe_main(_flags(tiny, trained, *grid, *HEAD)) == 0
    (checkpoint,) = (trained / "checkpoints").rglob("e0000-end.pt")
    scored = tmp_path / "scored"
    assert probe_main(_flags(tiny, scored, *HEAD, "--val_only", "--resume_checkpoint",
                             str(checkpoint))) == 0
    (before,), (after,) = _records(trained), _records(scored)
    assert [h["name"] for h in after["heads"]] == [h["name"] for h in before["heads"]]
    for a, b in zip(after["heads"], before["heads"]):
        assert (a["top1"], a["top5"]) == (b["last_top1"], b["last_top5"])
    source = after["val_only"]["heads_from"]
    assert source["format"] == "eval_encoder checkpoint" and source["position"] == [1, 0]
    # the only options that differ are the training's own (epochs, lrs), listed
    assert {line.split(":")[0] for line in source["config_differences"]} == \
        {"default_epoch", "default_lr_list", "val_only"}


@pytest.mark.parametrize("extra, says", [
    (["--val_only"], "give --probe_checkpoint"),
    (["--probe_checkpoint", "x.pt"], "read with --val_only only"),
    (["--val_only", "--probe_checkpoint", "missing.pt"], "missing.pt: no such file"),
])
def test_val_only_usage_mistakes_write_nothing(tiny, tmp_path, extra, says, seen, caplog):
    report = tmp_path / "report"
    assert probe_main(_flags(tiny, report, *extra)) == 2
    assert says in caplog.text and not report.exists()


def test_heads_that_do_not_fit_the_kind_fail_naming_the_file(tiny, tmp_path, seen, caplog):
    _published_probe(tmp_path / "latest.pt", heads=1)
    assert probe_main(_flags(tiny, tmp_path / "r", "--val_only", "--probe_checkpoint",
                             str(tmp_path / "latest.pt"), "--probe_head", "vjepa2",
                             "--probe_num_heads", "4")) == 1  # depth 4 by default: 3 blocks
    assert "latest.pt: head classifiers[0] does not fit --probe_head vjepa2" in caplog.text
    assert "Missing key(s)" in caplog.text
