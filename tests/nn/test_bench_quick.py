"""benchmarks/bench_caffe_layer.py --quick runs to the end and prints its ratio lines (speed is not asserted)."""

import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bench_caffe_layer_quick(tmp_path):
    out_json = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_caffe_layer.py"), "--quick",
                           "--out", str(out_json)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    for case in ("conv2", "ip1", "lenet_step"):
        assert re.search(r"^%s: +caffe_net [0-9.]+ ms .*\| gluon_caffe [0-9.]+ ms .*\| ratio [0-9.]+" % case,
                         proc.stdout, re.M), proc.stdout
    assert re.search(r"^memory: .* growth -?[0-9.]+ MB", proc.stdout, re.M), proc.stdout
    assert re.search(r"^memory \d+ LeNet .*target 20 MB \| gluon_caffe -?[0-9.]+ MB \| ratio [0-9.]+",
                     proc.stdout, re.M), proc.stdout
    assert re.search(r"^ip1 minus mxnet floor [0-9.]+ ms: caffe_net .*\| ratio [0-9.]+", proc.stdout, re.M), proc.stdout
    for case in ("conv2", "ip1"):
        assert re.search(r"^%s pipelined: +caffe_net [0-9.]+ ms .*\| gluon_caffe [0-9.]+ ms .*\| ratio [0-9.]+" % case,
                         proc.stdout, re.M), proc.stdout
    results = {r["case"]: r for r in json.loads(out_json.read_text())["results"]}
    assert set(results) == {"conv2", "ip1", "lenet_step", "memory"}
    assert all(results[c]["ratio"] > 0 for c in ("conv2", "ip1", "lenet_step"))
    assert all(results[c]["pipelined"]["ratio"] > 0 for c in ("conv2", "ip1"))
