"""benchmarks/bench_data.py --quick runs to the end, prints ratios and writes its JSON (speed is not asserted)."""

import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bench_data_quick(tmp_path):
    out = tmp_path / "bench_data.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_data.py"), "--quick",
                           "--reps", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [l for l in proc.stdout.splitlines() if "| ratio " in l and not l.startswith("memory")]
    assert any(l.startswith("raw28") for l in lines) and any(l.startswith("jpeg256") for l in lines), proc.stdout
    assert all("caffe_data" in l and "gluon_caffe" in l for l in lines)
    # The memory claim in run_all's row format: a worker's RSS growth against its 20 MB budget.
    assert re.search(r"^memory \d+ records, .*budget 20 MB \| gluon_caffe -?[0-9.]+ MB \| ratio [0-9.]+",
                     proc.stdout, re.M), proc.stdout
    result = json.loads(out.read_text())
    assert result["quick"] and result["exact"] == {"raw28": True, "jpeg256_test_phase": True}
    assert {r["case"] for r in result["results"]} == {"raw28", "jpeg256"}
    assert all(r["ratio"] > 0 for r in result["results"])
    assert result["memory"]["records"] > 0
