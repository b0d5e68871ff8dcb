"""Faults 6-8: the suite's log survives a kill, its trainer dies with it, and two suites on
one report never run a dataset twice nor tear a file."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from eval_encoder.launch.process import LAUNCHER_ENV
from eval_encoder.suite import locks, recipes, runner
from test_suite import FakeTrainer, write_recipe

REPO = Path(__file__).resolve().parents[1]

# Stands in for torchrun: prints, starts a worker in a session of its own (as torchrun's
# workers are) and takes it down on SIGTERM/SIGINT, as torchrun's agent does.
CHILD = textwrap.dedent("""
    import signal, subprocess, sys, time
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                              start_new_session=True)
    same_group = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    def stop(signum, frame):
        worker.terminate()
        worker.wait()
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    open(sys.argv[1], "w").write(f"{worker.pid} {same_group.pid}")
    for i in range(3):
        print(f"line {i}", flush=True)
    time.sleep(300)
""")

# the suite side: stream_process on that child
DRIVER = textwrap.dedent("""
    import signal, sys
    from pathlib import Path
    from eval_encoder.launch.process import stream_process
    # as from a terminal: a test run started in the background (`make test &`) hands its
    # children SIGINT ignored, and Python then leaves it ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stream_process([sys.executable, sys.argv[1], sys.argv[2]], Path(sys.argv[3]))
""")


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaps here counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _wait(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _start_driver(tmp_path):
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "driver.py").write_text(DRIVER)
    pids, log = tmp_path / "pids", tmp_path / "x.log"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"),
                               str(tmp_path / "child.py"), str(pids), str(log)],
                              stdout=subprocess.DEVNULL, env=env, start_new_session=True)
    assert _wait(lambda: pids.exists() and pids.read_text() and log.exists()
                 and b"line 2" in log.read_bytes(), 30), "the child did not start"
    child = [p for p in _children(driver.pid)]
    worker, same_group = map(int, pids.read_text().split())
    return driver, child, worker, same_group, log


def _children(pid: int):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_kill_9_of_the_suite_ends_its_trainer_and_workers_and_keeps_the_log(tmp_path):
    driver, child, worker, _, log = _start_driver(tmp_path)
    assert len(child) == 1 and _alive(worker)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert _wait(lambda: not _alive(child[0]) and not _alive(worker), 5), \
        f"survivors: {[p for p in (child[0], worker) if _alive(p)]}"
    # fault 6: every line the suite received is in its log, though it never closed the file
    assert log.read_bytes() == b"line 0\nline 1\nline 2\n"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_to_the_suite_reaches_the_trainers_whole_group(tmp_path, signum):
    driver, child, worker, same_group, _ = _start_driver(tmp_path)
    os.kill(driver.pid, signum)
    assert driver.wait(timeout=30) != 0
    survivors = [p for p in (child[0], worker, same_group) if _wait(lambda: not _alive(p), 5) is False]
    assert survivors == []


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_kill_9_of_the_suite_ends_real_torchrun_workers(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text("import os, sys, time\n"
                      f"open(os.path.join({str(tmp_path)!r}, f'w{{os.environ[\"RANK\"]}}'), 'w')"
                      ".write(str(os.getpid()))\nprint('up', flush=True)\ntime.sleep(300)\n")
    (tmp_path / "driver.py").write_text(DRIVER.replace(
        "[sys.executable, sys.argv[1], sys.argv[2]]",
        "[sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', "
        "sys.argv[1]]"))
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env["PYTHONPATH"] = str(REPO)
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(script), "-",
                               str(tmp_path / "x.log")], stdout=subprocess.DEVNULL, env=env,
                              start_new_session=True)
    files = [tmp_path / "w0", tmp_path / "w1"]
    assert _wait(lambda: all(f.exists() and f.read_text() for f in files), 120)
    workers = [int(f.read_text()) for f in files]
    torchrun = _children(driver.pid)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert _wait(lambda: not any(_alive(p) for p in workers + torchrun), 10)


# ----------------------------------------------------------------------------- two suites
class SlowTrainer(FakeTrainer):
    """A fake trainer that takes a while, so that two suites overlap."""

    def __call__(self, cmd, log_path):
        time.sleep(0.3)
        return super().__call__(cmd, log_path)


def test_two_suites_on_one_report_run_each_dataset_once(tmp_path):
    recipe = recipes.load_recipe(str(write_recipe(tmp_path, datasets=("ucf101", "hmdb51", "k400"))))
    report = str(tmp_path / "report")
    fake = SlowTrainer()  # shared: it sees every run of both suites
    barrier = threading.Barrier(2)

    def one_suite(_):
        barrier.wait()
        return runner.run_suite(recipe, "/data", report, launcher=fake)

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(one_suite, range(2))
    assert sorted(d for d, _ in fake.calls) == ["hmdb51", "k400", "ucf101"]  # once each
    for a, b in zip(first, second):
        assert sorted([a.status, b.status]) == ["complete", "skipped"]
        assert a.record_path == b.record_path  # the waiting suite found the other's record
    assert len(list(Path(report, "runs").rglob("*.json"))) == 3
    assert not list(Path(report).rglob("*.lock"))  # finished suites leave no lock behind


def test_no_wait_lock_leaves_a_busy_dataset_to_the_other_suite(tmp_path, capsys):
    recipe = recipes.load_recipe(str(write_recipe(tmp_path)))
    report = str(tmp_path / "report")
    fake = FakeTrainer()
    with locks.dataset_lock(report, recipe.name, "ucf101") as held:  # "another suite"
        assert held
        outcomes = runner.run_suite(recipe, "/data", report, launcher=fake, wait_lock=False)
        lock = locks.lock_path(report, recipe.name, "ucf101")
        assert lock.is_file()  # the other suite's live lock is left alone
    assert not lock.exists()  # and goes when that suite lets go
    assert [(o.dataset, o.status) for o in outcomes] == [("ucf101", "busy"), ("hmdb51", "complete")]
    assert [d for d, _ in fake.calls] == ["hmdb51"]
    out = capsys.readouterr().out
    assert "ucf101: skipped: another suite is running it (lock" in out
    assert "ucf101.lock" in out and "--no_wait_lock" in out


def test_a_lock_removed_as_its_holder_lets_go_is_never_held_twice(tmp_path):
    """A waits for B's lock; B removes the file as it lets go; A, on the removed file, must
    lock the path anew, so that A and a newcomer C never both hold the dataset."""
    path = locks.lock_path(str(tmp_path), "tiny", "ucf101")
    first, _ = locks.try_lock(path)
    holding, release = threading.Event(), threading.Event()

    def waiter():
        with locks.dataset_lock(str(tmp_path), "tiny", "ucf101") as held:
            assert held
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.3)  # the waiter blocks on the file held by ``first``
    first.close()  # removes the file, then lets go
    assert holding.wait(10)
    newcomer, owner = locks.try_lock(path)
    assert newcomer is None and f"pid {os.getpid()}" in owner  # the waiter holds the path
    release.set()
    thread.join()
    assert not path.exists()
    again, _ = locks.try_lock(path)
    assert again is not None
    again.close()


def test_a_waiting_suite_says_who_it_waits_for(tmp_path, capsys):
    recipe = recipes.load_recipe(str(write_recipe(tmp_path, datasets=("ucf101",))))
    report = str(tmp_path / "report")
    held, release = threading.Event(), threading.Event()

    def hold():
        with locks.dataset_lock(report, recipe.name, "ucf101"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    threading.Timer(0.5, release.set).start()
    (outcome,) = runner.run_suite(recipe, "/data", report, launcher=FakeTrainer())
    holder.join()
    assert outcome.status == "complete"
    out = capsys.readouterr().out
    assert f"another suite is running it (pid {os.getpid()} on" in out and "waiting for" in out


def test_concurrent_writers_of_the_probe_yaml_never_tear_it(tmp_path):
    recipe = recipes.load_recipe(str(write_recipe(tmp_path)))
    report = str(tmp_path / "report")
    barrier = threading.Barrier(8)

    def write(_):
        barrier.wait()
        for _ in range(25):
            path = recipes.write_probe_yaml(recipe, "ucf101", report)
            assert yaml.safe_load(path.read_text())["num_frames"] == 2

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    assert sorted(p.name for p in Path(report, "suite", "tiny").iterdir()) == ["ucf101.yaml"]
