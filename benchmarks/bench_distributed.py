"""Fashion-MNIST LeNet (Caffe convolutions) training throughput: one process vs 1 and 2 dist_sync workers.

    python benchmarks/bench_distributed.py [--quick] [--data caffe|lmdb]

Every configuration runs examples/dist_lenet.py with the same per-worker batch and number of
steps; samples/s is the steady state (after the first step) summed over the workers, from each
worker's own clock. On one 2-core machine the workers, the server and the scheduler share the
same two cores, so this measures the overhead of the parameter-server path more than scaling.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE = os.path.join(ROOT, "examples", "dist_lenet.py")
sys.path.insert(0, ROOT)

from gluon_caffe.distributed import launch_local  # noqa: E402  (imports mxnet first)

TAG = "GLUON_CAFFE_RESULT "


def _results(text):
    return [json.loads(line[len(TAG):]) for line in text.splitlines() if line.startswith(TAG)]


def run(config, lmdb, steps, batch, data):
    """One configuration: 'local' (one process, no kvstore) or the number of dist_sync workers."""
    cmd = [sys.executable, EXAMPLE, "--train-lmdb", lmdb, "--steps", str(steps), "--batch-size", str(batch),
           "--data", data, "--no-eval", "--quiet"]
    start = time.time()
    if config == "local":
        out = subprocess.run(cmd + ["--local"], capture_output=True, text=True, timeout=1800, check=True).stdout
        results = _results(out)
    else:
        results = []
        for r in launch_local(cmd, num_workers=config, num_servers=1, timeout=1800):
            results += _results(r.stdout)
    wall = time.time() - start
    samples = sum(r["steady_samples"] for r in results)
    seconds = max(r["steady_seconds"] for r in results)
    return {"config": config, "workers": len(results), "steps": steps, "batch_per_worker": batch,
            "samples_per_s": samples / seconds, "job_wall_s": wall,
            "last_loss": [r["last_loss"] for r in results]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, small LMDB")
    parser.add_argument("--data", choices=("caffe", "lmdb"), default="caffe")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    steps = 30 if args.quick else 150
    sys.path.insert(0, os.path.dirname(EXAMPLE))
    import dist_lenet

    with tempfile.TemporaryDirectory(prefix="bench_dist_") as tmp:
        lmdbs = dist_lenet.write_lmdbs(tmp, limit=2000 if args.quick else 12000, test_limit=10)
        out = {c: run(c, lmdbs["train"], steps, args.batch_size, args.data) for c in ("local", 1, 2)}
    for c, r in out.items():
        print("%-6s %d worker(s): %7.1f samples/s steady, job %5.1f s wall (incl. start-up)"
              % (c, r["workers"], r["samples_per_s"], r["job_wall_s"]))
    ref, one, two = out["local"]["samples_per_s"], out[1]["samples_per_s"], out[2]["samples_per_s"]
    what = "lenet train (data %s, batch %d/worker, %d cores)" % (args.data, args.batch_size, os.cpu_count() or 0)
    print("%s: 1 process %.1f samples/s | gluon_caffe 1 dist_sync worker %.1f samples/s | ratio %.2f"
          % (what, ref, one, one / ref))
    print("%s: 1 process %.1f samples/s | gluon_caffe 2 dist_sync workers %.1f samples/s | ratio %.2f"
          % (what, ref, two, two / ref))
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "bench_distributed.json"), "w") as f:
        json.dump({"benchmark": "distributed", "quick": args.quick, "data": args.data, "cpu_count": os.cpu_count(),
                   "results": {str(k): v for k, v in out.items()}}, f, indent=2)


if __name__ == "__main__":
    main()
