"""`make bench`: run every benchmarks/bench_*.py, collect their ratio lines into RESULTS.md and a chart.

Each benchmark prints its claims as ``<what> <reference> X unit | gluon_caffe Y unit | ratio R``
(reference first) and exits non-zero only on an error. This runner records the machine, the versions
and the date beside them.

    python benchmarks/run_all.py [--quick] [--only NAME ...]

With ``--only``, the other benchmarks' rows of the last run are kept (from
``benchmarks/out/rows.json``), each with the date and mode of its own run, so one noisy benchmark
can be rerun without rerunning everything.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RATIO_LINE = re.compile(r"^(?P<claim>.*?\S)\s+\|\s+gluon_caffe(?P<how>\(\S+\))?\s+(?P<ours>[^|]*?)\s+\|\s+"
                        r"ratio\s+(?P<ratio>[0-9.]+)")


def cpu_description():
    model, flags = platform.processor() or "unknown", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("unknown", "", "x86_64"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    break
    except OSError:
        pass
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile") if f in flags]
    return "%s, %d cores, %s" % (model, os.cpu_count() or 0, " ".join(simd) or "no SIMD flags read")


def versions():
    import mxnet
    import numpy

    import gluon_caffe as gc

    info = gc.caffe_info()
    out = "gluon_caffe %s, libcaffe %s (BVLC %s, patch %s), mxnet %s, numpy %s, python %s" % (
        gc.__version__, info["version"], info["commit"], info["patch_id"], mxnet.__version__, numpy.__version__,
        platform.python_version())
    try:
        import cv2

        out += ", opencv-python %s" % cv2.__version__
    except ImportError:
        pass
    return out


# MXNet's default OpenMP pool is half the processors (it assumes hyper-threading), one thread on a
# 2-vCPU machine, while Caffe's OpenBLAS and OpenCV use every core: the inference benchmarks give
# MXNet the cores too (a user's own setting wins), and RESULTS.md says so. Not the others: several
# processes (distributed training) or Caffe's BLAS threads beside MXNet's (CaffeLayer) would then
# share the cores with spinning OpenMP threads.
THREADS = {"MXNET_OMP_MAX_THREADS": str(os.cpu_count() or 1)}
BENCH_ENV = {"bench_inference.py": THREADS, "bench_onnx.py": THREADS}


def run_one(path, quick):
    cmd = [sys.executable, path] + (["--quick"] if quick else [])
    print("\n$ %s" % " ".join(os.path.relpath(c) if c == path else c for c in cmd), flush=True)
    env = dict(BENCH_ENV.get(os.path.basename(path), {}), **os.environ)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    sys.stdout.write(proc.stdout)
    rows = []
    for line in proc.stdout.splitlines():
        m = RATIO_LINE.match(line.strip())
        if m:
            ours = ("%s %s" % (m.group("how"), m.group("ours"))) if m.group("how") else m.group("ours")
            rows.append((os.path.basename(path), m.group("claim"), ours, float(m.group("ratio"))))
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
    return rows, proc.returncode


def write_chart(rows, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    # Throughput claims (samples/s) print ours/reference, where higher is better: plot their inverse
    # so that every bar reads "lower is better".
    labels, ratios = [], []
    for bench, claim, _, ratio in rows:
        throughput = "samples/s" in claim
        labels.append("%s: %s%s" % (bench[6:-3], " ".join(claim.split())[:55], " (1/x)" if throughput else ""))
        ratios.append(1.0 / ratio if throughput and ratio else ratio)
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(rows) + 1.5))
    ax.barh(range(len(rows)), ratios, color=["#3a7" if r <= 1.0 else "#c73" for r in ratios])
    ax.axvline(1.0, color="k", linewidth=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ratio: gluon_caffe / reference (time or memory; lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark file names to run")
    args = parser.parse_args(argv)
    paths = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    if args.only:
        paths = [p for p in paths if os.path.basename(p) in args.only or os.path.basename(p)[:-3] in args.only]
    store = os.path.join(HERE, "out", "rows.json")
    kept = {}
    if args.only:
        try:
            with open(store) as f:
                kept = json.load(f)
        except (OSError, ValueError):
            kept = {}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    failed = []
    for path in paths:
        got, rc = run_one(path, args.quick)
        kept[os.path.basename(path)] = {"date": now, "quick": args.quick, "rows": got}
        if rc != 0:
            failed.append(os.path.basename(path))
    os.makedirs(os.path.dirname(store), exist_ok=True)
    with open(store, "w") as f:
        json.dump(kept, f, indent=1)
    rows = [tuple(r) for name in sorted(kept) for r in kept[name]["rows"]]
    runs = sorted({(v["date"], v["quick"]) for v in kept.values()})
    when = "; ".join("%s%s" % (d, " (--quick)" if q else "") for d, q in runs)
    lines = ["# Benchmark results", "",
             "Generated by `make bench` (benchmarks/run_all.py) on %s." % when,
             "", "- machine: %s" % cpu_description(), "- versions: %s" % versions(),
             "- threads: %s for %s (MXNet's own default is half the processors); the others run with "
             "the environment as given" % (" ".join("%s=%s" % kv for kv in sorted(dict(THREADS, **{
                 k: os.environ[k] for k in THREADS if k in os.environ}).items())),
                 ", ".join(sorted(BENCH_ENV))), "",
             "Each claim was measured side by side with its reference in one run (medians; see each script",
             "for min-max). Ratio = gluon_caffe / reference for times and memory (lower is better) and",
             "reference / gluon_caffe where the script says throughput.", "",
             "| benchmark | run | claim (reference figure) | gluon_caffe | ratio |", "|---|---|---|---|---|"]
    for name in sorted(kept):
        for bench, claim, ours, ratio in kept[name]["rows"]:
            lines.append("| %s | %s%s | %s | %s | %.2f |" % (
                bench, kept[name]["date"], " quick" if kept[name]["quick"] else "", claim.replace("|", "/"),
                ours, ratio))
    if failed:
        lines += ["", "Failed to run: %s" % ", ".join(failed)]
    if write_chart(rows, os.path.join(HERE, "ratios.png")):
        lines += ["", "![ratios](ratios.png)"]
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\nwrote %s (%d claims)" % (os.path.join(HERE, "RESULTS.md"), len(rows)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
