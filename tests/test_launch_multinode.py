"""Many nodes through torchrun's c10d rendezvous: two torchrun agents on this machine, one
process each, joined on localhost, give the record of one agent with two processes; the
record lists every node. The probe checks the multi-node flags it is given against
torchrun's environment."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval_encoder.config import ConfigError
from eval_encoder.probe.args import parse_config
from eval_encoder.demo import free_port, generate, probe_command, save_tiny_encoder
from eval_encoder.launch.torchrun import Topology, command
from eval_encoder.record import read_record

TRAINER = Path(__file__).resolve().parents[1] / "eval_encoder" / "attentive_probe.py"
LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                "MASTER_PORT", "GROUP_RANK", "GROUP_WORLD_SIZE", "TORCHELASTIC_RUN_ID")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("multinode_demo")
    return generate(out), save_tiny_encoder(out)


def _env():
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    return dict(env, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _probe_argv(demo, report: Path, *extra: str):
    data, weights = demo
    cmd = probe_command(data, weights, report, nproc=1, extra=[
        "--protocol", "clean", "--batch_size", "2", "--global_batch_size", "4",
        "--default_epoch", "2", *extra])
    return cmd[2:]  # after `python attentive_probe.py`


def _record(report: Path) -> dict:
    (path,) = sorted((report / "runs" / "demo").glob("*.json"))
    return read_record(str(path))


def _comparable(record: dict):
    return [{k: h[k] for k in ("name", "status", "history")} for h in record["heads"]], \
        record["reported"]


@pytest.mark.slow
def test_two_agents_joined_by_c10d_equal_one_agent_with_two_processes(demo, tmp_path):
    one_node = tmp_path / "one_node"
    single = subprocess.run(command(TRAINER, _probe_argv(demo, one_node), Topology(2)),
                            env=_env(), capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]

    two_nodes = tmp_path / "two_nodes"
    endpoint = f"localhost:{free_port()}"
    # the probe is told the layout too: it checks it against what torchrun set
    argv = _probe_argv(demo, two_nodes, "--nnodes", "2", "--rdzv_backend", "c10d",
                       "--rdzv_endpoint", endpoint)
    agents = [subprocess.Popen(command(TRAINER, argv, Topology(1, 2, node_rank, "c10d", endpoint,
                                                               rdzv_id="multinode-test")),
                               env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True) for node_rank in (0, 1)]
    logs = [agent.communicate(timeout=600)[1] for agent in agents]
    assert [a.returncode for a in agents] == [0, 0], "\n".join(log[-3000:] for log in logs)

    joined, reference = _record(two_nodes), _record(one_node)
    assert _comparable(joined) == _comparable(reference)  # bit for bit on CPU
    assert joined["samples"]["val"]["scored"] == joined["samples"]["val"]["expected"] == 7
    assert joined["world_size"] == reference["world_size"] == 2
    assert [(n["node_rank"], n["world_size"], len(n["ranks"])) for n in joined["nodes"]] \
        == [(0, 1, 1), (1, 1, 1)]
    assert sorted(r for n in joined["nodes"] for r in n["ranks"]) == [0, 1]
    assert [(n["world_size"], n["ranks"]) for n in reference["nodes"]] == [(2, [0, 1])]
    assert all(n["host"] for n in joined["nodes"] + reference["nodes"])


# ----------------------------------------------------------------------------- the checks
TORCHRUN_2X1 = {"TORCHELASTIC_RUN_ID": "x", "GROUP_WORLD_SIZE": "2", "GROUP_RANK": "1",
                "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_PORT": "29500"}


def _parse(monkeypatch, env, *flags):
    for var in LAUNCHER_ENV:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    return parse_config(["--dataset", "demo", *flags])


def test_multi_node_flags_that_agree_with_torchrun_are_accepted(monkeypatch):
    cfg = _parse(monkeypatch, TORCHRUN_2X1, "--nnodes", "2", "--rdzv_backend", "c10d",
                 "--rdzv_endpoint", "node001:29400", "--node_rank", "0")  # c10d: not checked
    assert (cfg.nnodes, cfg.rdzv_backend, cfg.rdzv_endpoint) == ("2", "c10d", "node001:29400")
    _parse(monkeypatch, TORCHRUN_2X1, "--nnodes", "1:4", "--node_rank", "1",
           "--rdzv_endpoint", "node001:29500")  # static (torchrun's default): all checked
    _parse(monkeypatch, {}, "--nnodes", "1", "--node_rank", "0")  # plain python: one node


@pytest.mark.parametrize("flags, env, pattern", [
    (["--nnodes", "4"], TORCHRUN_2X1, r"--nnodes 4 disagrees with the launcher \(\$GROUP_WORLD_SIZE=2\)"),
    (["--nnodes", "3:4"], TORCHRUN_2X1, r"--nnodes 3:4 disagrees"),
    (["--nnodes", "two"], TORCHRUN_2X1, r"expected a node count N or a range MIN:MAX"),
    (["--node_rank", "0"], TORCHRUN_2X1, r"--node_rank 0 disagrees with the launcher \(\$GROUP_RANK=1\).*c10d"),
    (["--rdzv_endpoint", "node001:29501"], TORCHRUN_2X1, r"disagrees with the launcher's static rendezvous"),
    (["--rdzv_endpoint", "node001:port"], TORCHRUN_2X1, r"expected HOST:PORT"),
    (["--rdzv_backend", "c10d"], {}, r"not started by torchrun"),
])
def test_multi_node_flags_that_disagree_are_clear_errors(monkeypatch, flags, env, pattern):
    with pytest.raises(ConfigError, match=pattern):
        _parse(monkeypatch, env, *flags)


def test_torchrun_command_lines():
    assert command(TRAINER, ["--x"], Topology()) == [sys.executable, str(TRAINER), "--x"]
    assert command(TRAINER, [], Topology(2))[1:5] == ["-m", "torch.distributed.run",
                                                       "--standalone", "--nproc_per_node=2"]
    many = Topology(8, 2, 1, None, "node001:29500", rdzv_id="r.ssv2").flags()
    assert many == ["--nnodes=2", "--nproc_per_node=8", "--rdzv_backend=c10d",
                    "--rdzv_endpoint=node001:29500", "--rdzv_id=r.ssv2"]
    static = Topology(1, 2, 1, "static", "node001:29500").flags()
    assert "--node_rank=1" in static and "--rdzv_backend=static" in static
    with pytest.raises(ConfigError, match="--nnodes 2 needs --rdzv_endpoint"):
        Topology(1, 2).flags()
    with pytest.raises(ConfigError, match="--node_rank 2 is not a rank of 2 node"):
        Topology(1, 2, 2, None, "h:1")
