"""dist_sync training: the launcher, CaffeDataset sharding, and a real 2-worker LeNet job on localhost."""

import importlib.util
import os
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

import gluon_caffe.data as gcd
from gluon_caffe import distributed as dist

from .conftest import assert_close

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "dist_lenet.py")
STEPS, BATCH, LR = 8, 16, 0.1


def _example():
    spec = importlib.util.spec_from_file_location("dist_lenet", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie is gone for our purpose (it holds no resources but its exit status)
    with open("/proc/%d/stat" % pid) as f:
        return f.read().split(")")[-1].split()[0] == "Z"


@pytest.fixture(scope="module")
def lenet():
    return _example()


@pytest.fixture(scope="module")
def lmdbs(lenet, tmp_path_factory):
    return lenet.write_lmdbs(str(tmp_path_factory.mktemp("dist_lmdb")), limit=400, test_limit=50)


def _worker_cmd(lmdbs, *extra):
    return [sys.executable, EXAMPLE, "--train-lmdb", lmdbs["train"], "--batch-size", str(BATCH), "--lr", str(LR),
            "--momentum", "0", "--no-eval", "--quiet"] + list(extra)


@pytest.fixture(scope="module")
def job(lmdbs, tmp_path_factory):
    """Scheduler + 1 server + 2 workers, STEPS synchronised steps through Caffe's sharded Data layer."""
    trace = str(tmp_path_factory.mktemp("dist_trace"))
    results = dist.launch_local(_worker_cmd(lmdbs, "--data", "caffe", "--steps", str(STEPS), "--trace", trace),
                                num_workers=2, num_servers=1, timeout=120)
    workers = sorted((dict(np.load(os.path.join(trace, f), allow_pickle=True)) for f in os.listdir(trace)),
                     key=lambda w: int(w["rank"]))
    return results, workers


def test_job_runs_and_cleans_up(job):
    results, workers = job
    assert [r.returncode for r in results] == [0, 0]
    assert [int(w["rank"]) for w in workers] == [0, 1]
    assert all(int(w["num_workers"]) == 2 for w in workers)
    assert all(_gone(r.pid) for r in results)


def test_parameters_identical_after_every_step(job):
    _, (w0, w1) = job
    assert w0["params"].shape[0] == STEPS
    np.testing.assert_array_equal(w0["params"], w1["params"])


def test_shards_are_disjoint_and_cover_the_db(job, lmdbs):
    _, workers = job
    shards = [set(w["keys"].tolist()) for w in workers]
    full = gcd.CaffeLMDBDataset(lmdbs["train"])
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == {full.key(i) for i in range(len(full))}


def test_each_worker_trained_on_its_shard(job, lmdbs):
    """Caffe's Data layer, sharded by kv.rank, gave records rank, rank + 2, ... transformed by Caffe."""
    _, workers = job
    for w in workers:
        shard = gcd.CaffeLMDBDataset(lmdbs["train"], num_parts=2, part_index=int(w["rank"]))
        n = STEPS * BATCH
        images = np.stack([shard[i][0] for i in range(n)]).astype(np.float32)
        labels = np.array([shard[i][1] for i in range(n)], np.float32)
        np.testing.assert_array_equal(w["y"].reshape(-1), labels)
        np.testing.assert_array_equal(w["x"].reshape(n, -1), (images * np.float32(0.00390625)).reshape(n, -1))


def test_loss_falls(job):
    _, workers = job
    loss = np.mean([w["loss"] for w in workers], axis=0)
    assert loss[-2:].mean() < loss[:2].mean() - 0.1, loss


def test_equals_single_process_training_on_the_combined_batch(job, lenet):
    """Plain SGD: 2 workers x batch B on dist_sync == one process, batch 2B, same start."""
    _, (w0, w1) = job
    net = lenet.build_lenet()
    lenet.init_params(net, 0)
    net.hybridize()
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": LR, "momentum": 0.0}, kvstore=None)
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    for step in range(STEPS):
        x = mx.nd.array(np.concatenate([w0["x"][step], w1["x"][step]]))
        y = mx.nd.array(np.concatenate([w0["y"][step], w1["y"][step]]))
        with mx.autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(2 * BATCH)
        assert_close(lenet.param_vector(net), w0["params"][step], 1e-4, "parameters after step %d" % (step + 1))


def test_killed_worker_stops_the_job_quickly(lmdbs):
    start = time.monotonic()
    with pytest.raises(dist.WorkerFailedError) as info:
        dist.launch_local(_worker_cmd(lmdbs, "--data", "lmdb", "--steps", "1000", "--die-at-step", "2"),
                          num_workers=2, num_servers=1, timeout=120)
    elapsed = time.monotonic() - start
    assert elapsed < 60, elapsed
    message = str(info.value)
    assert "signal SIGKILL" in message and "worker" in message
    results = info.value.results
    codes = sorted(r.returncode for r in results)
    assert -9 in codes
    assert any(r.killed_by_launcher for r in results)   # the survivor would have waited forever
    assert all(_gone(r.pid) for r in results)


def test_timeout_stops_everything():
    start = time.monotonic()
    with pytest.raises(dist.LaunchTimeoutError) as info:
        dist.launch_local([sys.executable, "-c", "import time; time.sleep(120)"], 2, 1, timeout=2)
    assert time.monotonic() - start < 20
    assert "did not finish within 2" in str(info.value)
    assert all(_gone(r.pid) and r.killed_by_launcher for r in info.value.results)


def test_failing_worker_reports_its_stderr():
    with pytest.raises(dist.WorkerFailedError) as info:
        dist.launch_local([sys.executable, "-c", "import sys; sys.exit('bad input file x.lmdb')"], 1, 1, timeout=60)
    assert "exit code 1" in str(info.value) and "bad input file x.lmdb" in str(info.value)


def test_dmlc_env():
    env = dist.dmlc_env("server", "10.0.0.1", 9000, 4, 2, node_host="10.0.0.2", extra={"PS_VERBOSE": 1})
    assert env == {"DMLC_ROLE": "server", "DMLC_PS_ROOT_URI": "10.0.0.1", "DMLC_PS_ROOT_PORT": "9000",
                   "DMLC_NUM_WORKER": "4", "DMLC_NUM_SERVER": "2", "DMLC_NODE_HOST": "10.0.0.2", "PS_VERBOSE": "1"}
    with pytest.raises(ValueError):
        dist.dmlc_env("boss", "h", 1, 1, 1)
    with pytest.raises(ValueError):
        dist.launch_local(["true"], 0, 1)


def test_ssh_commands(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# cluster\nalice@node1\nnode2:2222\n\n")
    assert dist.read_hosts(str(hosts)) == [("alice@node1", None), ("node2", 2222)]
    lines = dist.ssh_commands(dist.read_hosts(str(hosts)), "python train.py --lr 0.1", num_workers=3,
                              num_servers=2, port=9100, cwd="/data/my job")
    assert [(role, i, host) for role, i, host, _ in lines] == [
        ("scheduler", 0, "alice@node1"), ("server", 0, "alice@node1"), ("server", 1, "node2"),
        ("worker", 0, "alice@node1"), ("worker", 1, "node2"), ("worker", 2, "alice@node1")]
    argv = lines[4][3]
    assert argv[0] == "ssh" and argv[-2] == "node2" and argv[argv.index("-p") + 1] == "2222"
    remote = argv[-1]
    assert remote.startswith("cd '/data/my job' && ")
    for part in ("DMLC_ROLE=worker", "DMLC_PS_ROOT_URI=node1", "DMLC_PS_ROOT_PORT=9100", "DMLC_NUM_WORKER=3",
                 "DMLC_NUM_SERVER=2", "DMLC_NODE_HOST=node2", "GLUON_CAFFE_WORKER_INDEX=1",
                 "exec python train.py --lr 0.1"):
        assert part in remote
    assert lines[1][3][-1].endswith("exec python3 -c 'import mxnet'")


def test_cli_dry_run(tmp_path, capsys):
    hosts = tmp_path / "hosts"
    hosts.write_text("h1\nh2\n")
    assert dist.main(["-n", "2", "-s", "1", "-H", str(hosts), "-p", "9200", "--dry-run", "--",
                      "python", "train.py"]) == 0
    out = capsys.readouterr().out
    assert out.count("# worker") == 2 and "DMLC_PS_ROOT_PORT=9200" in out and "exec python train.py" in out


def test_cli_runs_local_job():
    out = subprocess.run([sys.executable, "-m", "gluon_caffe.distributed", "-n", "1", "-s", "1", "--timeout", "60",
                          "--", sys.executable, "-c",
                          "import os, mxnet as mx; kv = mx.kv.create('dist_sync'); "
                          "print('role', os.environ['DMLC_ROLE'], kv.rank, kv.num_workers); kv._barrier(); del kv"],
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert "role worker 0 1" in out.stdout


def test_step_watchdog_ends_a_stuck_worker():
    code = ("import time; from gluon_caffe.distributed import StepWatchdog\n"
            "dog = StepWatchdog(0.5).start(); dog.feed(); time.sleep(30)")
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and time.monotonic() - start < 25
    assert "no training step finished" in out.stderr and "after 1 steps" in out.stderr


# ------------------------------------------------------------------ CaffeDataset sharding (no job)

@pytest.fixture(scope="module")
def numbered_lmdb(tmp_path_factory):
    """23 records whose pixels and label are the record number."""
    path = str(tmp_path_factory.mktemp("numbered") / "lmdb")
    n = 23
    gcd.write_lmdb(np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 1, 2, 2)).copy(),
                   np.arange(n), path)
    return path


def _layer(path, batch):
    return ('layer { name: "d" type: "Data" top: "data" top: "label" '
            'data_param { source: "%s" batch_size: %d backend: LMDB } }' % (path, batch))


@pytest.mark.parametrize("last_batch", ["keep", "discard"])
@pytest.mark.parametrize("num_parts", [2, 3])
def test_caffe_dataset_shards_like_caffe(numbered_lmdb, num_parts, last_batch):
    seen = []
    for part in range(num_parts):
        ds = gcd.CaffeDataset(_layer(numbered_lmdb, 3), last_batch=last_batch, num_parts=num_parts, part_index=part)
        want = list(range(part, 23, num_parts))
        if last_batch == "discard":
            want = want[:len(want) // 3 * 3]
        assert ds.num_records == len(range(part, 23, num_parts))
        assert len(ds) == -(-len(want) // 3)
        for _ in range(2):   # every epoch the same records
            got = []
            for x, y in ds:
                assert x.shape[0] <= 3
                np.testing.assert_array_equal(x.asnumpy()[:, 0, 0, 0], y.asnumpy())
                got += y.asnumpy().astype(int).tolist()
            assert got == want
        seen += got
    if last_batch == "keep":
        assert sorted(seen) == list(range(23))


def test_caffe_dataset_shard_arguments(numbered_lmdb):
    with pytest.raises(ValueError, match="part_index"):
        gcd.CaffeDataset(_layer(numbered_lmdb, 3), num_parts=2, part_index=2)
    with pytest.raises(ValueError, match="rollover"):
        gcd.CaffeDataset(_layer(numbered_lmdb, 3), last_batch="rollover", num_parts=2)
    with pytest.raises(ValueError, match="cannot be split"):
        gcd.CaffeDataset(_layer(numbered_lmdb, 3), num_parts=24, part_index=0)
