"""Data pipeline benchmark: Caffe's own Data layer (through gc.CaffeNet) vs gluon_caffe.data, side by side in one run.

Cases (batch 64, reference first, alternating reference and ours in every repetition; before each
stream is timed, a short sleep lets the previous one's prefetchers finish what they had started, and
untimed batches drain the queues they filled):

- ``raw28``: MNIST-like raw 28x28 uint8 records (Fashion-MNIST when Debian's dataset-fashion-mnist
  is installed), ``scale: 0.00390625``.
- ``jpeg256``: 256x256 JPEG records, ``crop_size: 227 mirror: true mean_file`` in TRAIN.

Variants (what a user writes): ``fast_path batches()`` is ``ds.batches(64, t)`` (numpy or NDArray
batches; ``workers`` are decoding threads); ``gc.data.DataLoader`` is ``gc.data.DataLoader(
ds.transform_first(t), batch_size=64, num_workers=N)``, Gluon's arguments routed to that fast path
(NDArray batches); ``DataLoader per-sample`` is plain ``mx.gluon.data.DataLoader(ds.transform_first(t),
batch_size=64, num_workers=N)`` (worker processes, or ``thread_pool=True``) with Gluon's default
batchify; ``DataLoader ... gc.data.batchify`` is the same with ``batchify_fn=gc.data.batchify``.

Each line reads ``case variant: caffe_data X ms | gluon_caffe Y ms | ratio Y/X`` (time per batch,
median over the repetitions with min-max; a ratio below 1 means ours is faster) followed by images/s
and the speed-up (Caffe's time / ours). ``memory`` passes over a raw database and reports the RSS
growth of a DataLoader worker and of the fast path (``/proc/self/status``). Results go to
``benchmarks/out/bench_data.json``. The exit status is non-zero only on an error, never because a
result is slow.

Usage: ``python benchmarks/bench_data.py [--quick] [--reps N] [--out PATH] [--only CASE ...]``
(``--only jpeg256`` runs that case alone, e.g. to compare two versions of the JPEG pipeline in
alternating runs; the memory pass runs when ``memory`` is among the cases).
"""

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import mxnet as mx  # noqa: E402

import gluon_caffe as gc  # noqa: E402
from gluon_caffe.data import CaffeLMDBDataset, CaffeTransform, write_lmdb  # noqa: E402

__all__ = ["main"]

BATCH = 64
FASHION = "/usr/share/datasets/fashion-mnist"
RAW_TRANSFORM = "scale: 0.00390625"
CASES = ("raw28", "jpeg256", "memory")
# Variants whose batches are built in worker processes (their CPU time is not measured).
PROCESS_WORKERS = {"DataLoader per-sample workers=2", "DataLoader workers=2 gc.data.batchify"}


# ------------------------------------------------------------------------------------- data
def mnist_like(n):
    """`n` 28x28 uint8 images and labels: Fashion-MNIST's training set, cycled, when installed;
    else random pixels (the record format is what matters here, not the pictures)."""
    path = os.path.join(FASHION, "train-images-idx3-ubyte.gz")
    if os.path.isfile(path):
        with gzip.open(path, "rb") as f:
            f.read(16)
            base = np.frombuffer(f.read(), np.uint8).reshape(-1, 28, 28)
        with gzip.open(os.path.join(FASHION, "train-labels-idx1-ubyte.gz"), "rb") as f:
            f.read(8)
            labels = np.frombuffer(f.read(), np.uint8)
        reps = -(-n // len(base))
        return np.tile(base, (reps, 1, 1))[:n], np.tile(labels, reps)[:n].astype(np.int64)
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def photos(n, size=256, seed=0):
    """Photo-like BGR images (smooth colour fields plus mild noise), uint8 CHW."""
    import cv2
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.integers(0, 256, (size // 16, size // 16, 3)).astype(np.uint8)
        img = cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img.astype(np.int16) + rng.integers(-4, 5, img.shape), 0, 255).astype(np.uint8)
        out.append(img.transpose(2, 0, 1))
    return out


def make_raw_db(root, n):
    path = os.path.join(root, "raw28_%d" % n)
    if not os.path.exists(path):
        images, labels = mnist_like(n)
        write_lmdb(images, labels, path)
    return path


def make_jpeg_db(root, n):
    from gluon_caffe.converter.mean import save_mean
    path = os.path.join(root, "jpeg256_%d" % n)
    mean = os.path.join(root, "jpeg256_mean.binaryproto")
    if not os.path.exists(path):
        imgs = photos(n)
        write_lmdb(imgs, np.arange(n) % 1000, path, encoded="jpg")
        save_mean(mean, np.mean(np.stack(imgs[:256]), axis=0, dtype=np.float64).astype(np.float32)[None])
    return path, mean


def data_layer(source, transform, batch=BATCH):
    return ('layer { name: "data" type: "Data" top: "data" top: "label" transform_param { %s } '
            'data_param { source: "%s" batch_size: %d backend: LMDB } }' % (transform, source, batch))


# ---------------------------------------------------------------------------------- timing
def endless(make_iter):
    """Batches forever: a new pass (a new iterator) whenever one ends, as epochs follow."""
    while True:
        for batch in make_iter():
            yield batch


def caffe_batches(source, transform, phase="train"):
    net = gc.CaffeNet(data_layer(source, transform), phase=phase)
    while True:
        blobs = net.forward()
        yield blobs["data"], blobs["label"]


def _sync(batch):
    data = batch[0]
    if hasattr(data, "wait_to_read"):
        data.wait_to_read()


def time_batches(stream, count, warm, settle=0.0):
    """Seconds per batch over `count` batches, after `warm` untimed ones (which drain what a
    prefetcher built while the stream was idle, so that only steady state is timed): wall time,
    and this process's CPU time (all its threads: Caffe's prefetch thread, our decoding threads;
    not DataLoader worker processes). First `settle` seconds of sleep: the previous stream's
    prefetchers (Caffe's thread, DataLoader workers) finish the batches they had started instead
    of taking CPU from this one's timed batches."""
    if settle:
        time.sleep(settle)
    for _ in range(warm):
        _sync(next(stream))
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(count):
        _sync(next(stream))
    return (time.perf_counter() - t0) / count, (time.process_time() - c0) / count


def summary(seconds):
    ms = [s * 1e3 for s in seconds]
    return {"median": statistics.median(ms), "min": min(ms), "max": max(ms), "runs": ms}


def run_case(case, reference, variants, reps, count, warm, results, target=None, settle=0.0):
    """Time the reference and each variant, alternating, `reps` times; print and record ratios."""
    times = {name: [] for name in ["caffe_data"] + [v[0] for v in variants]}
    cpu = {name: [] for name in times}
    streams = {"caffe_data": reference}
    streams.update({name: stream for name, stream in variants})
    for _ in range(reps):
        for name in times:
            wall, used = time_batches(streams[name], count, warm, settle)
            times[name].append(wall)
            cpu[name].append(used)
    ref = summary(times["caffe_data"])
    ref_cpu = statistics.median(cpu["caffe_data"]) * 1e3
    for name, _ in variants:
        ours = summary(times[name])
        # A process worker's CPU time is not this process's: only in-process variants report it.
        ours_cpu = None if name in PROCESS_WORKERS else statistics.median(cpu[name]) * 1e3
        ratio = ours["median"] / ref["median"]
        rec = {
            "case": case, "variant": name, "batch_size": BATCH, "reference": "caffe_data",
            "reference_ms": ref, "ours_ms": ours, "ratio": ratio, "speedup": 1.0 / ratio,
            "reference_images_per_s": BATCH / ref["median"] * 1e3,
            "ours_images_per_s": BATCH / ours["median"] * 1e3, "target_speedup": target,
            "reference_cpu_ms": ref_cpu, "ours_cpu_ms": ours_cpu,
        }
        results.append(rec)
        print("%-8s %-38s caffe_data %8.3f ms [%.3f-%.3f] | gluon_caffe %8.3f ms [%.3f-%.3f] | ratio %.2f"
              " | images/s %9.0f vs %9.0f (%.2fx%s)"
              % (case, name, ref["median"], ref["min"], ref["max"], ours["median"], ours["min"], ours["max"],
                 ratio, rec["reference_images_per_s"], rec["ours_images_per_s"], rec["speedup"],
                 ", target %.1fx" % target if target else ""), flush=True)
        print("%-8s %-38s   cpu per batch (process): caffe_data %.3f ms, gluon_caffe %s"
              % ("", "", ref_cpu, "%.3f ms" % ours_cpu if ours_cpu is not None else "n/a (worker processes)"),
              flush=True)


def check_exact(source, transform, ds):
    """First TEST-phase batch of Caffe's layer vs the fast path (deterministic settings)."""
    ref = next(caffe_batches(source, transform, "test"))
    t = CaffeTransform(transform, "test")
    data, label = next(iter(ds.batches(BATCH, t, as_numpy=True)))
    return bool(np.array_equal(ref[0], data) and np.array_equal(ref[1].astype(np.int64), label))


# ---------------------------------------------------------------------------------- memory
def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _rss_fields():
    return {k: _status_kb(k) for k in ("VmRSS", "RssAnon", "RssFile")}


class _RSSProbe:
    """A dataset transform that reports the process's VmRSS (kB) with every 256th sample: run in
    a DataLoader worker, it measures the worker."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        img, label = self.dataset[i]
        rss = _status_kb("VmRSS") if i % 256 == 0 else -1
        return img, label, np.int64(rss)


def memory_case(path, quick):
    """RSS growth over one pass: a DataLoader worker (per-sample path) and the fast path."""
    ds = CaffeLMDBDataset(path)
    probe = _RSSProbe(ds)
    loader = mx.gluon.data.DataLoader(probe, batch_size=BATCH, num_workers=1)
    seen = []
    for _, _, rss in loader:
        r = rss.asnumpy()
        seen.extend(int(v) for v in r[r >= 0])
    worker = {"start_kb": seen[1], "end_kb": seen[-1], "max_kb": max(seen[1:]),
              "growth_mb": (max(seen[1:]) - seen[1]) / 1024.0, "samples": len(seen)}
    before = None
    peak = {}
    t = CaffeTransform(RAW_TRANSFORM)
    for k, _ in enumerate(ds.batches(BATCH, t, as_numpy=True)):
        if k == 2:
            before = _rss_fields()
        if k > 2 and k % 64 == 0:
            now = _rss_fields()
            peak = {f: max(peak.get(f, 0), now[f]) for f in now}
    fast = {"before_kb": before, "peak_kb": peak,
            "growth_mb": (peak["VmRSS"] - before["VmRSS"]) / 1024.0 if peak else 0.0}
    print("memory   %d records: DataLoader worker VmRSS %+.1f MB over the pass | fast path VmRSS %+.1f MB "
          "(RssAnon %+.1f MB, RssFile %+.1f MB)"
          % (len(ds), worker["growth_mb"], fast["growth_mb"],
             (peak.get("RssAnon", 0) - before["RssAnon"]) / 1024.0 if peak else 0.0,
             (peak.get("RssFile", 0) - before["RssFile"]) / 1024.0 if peak else 0.0), flush=True)
    # The claim in run_all's format: a worker's RSS growth over a pass against a 20 MB budget.
    print("memory %d records, DataLoader worker RSS growth over a pass: budget 20 MB | gluon_caffe %.1f MB "
          "| ratio %.2f" % (len(ds), worker["growth_mb"], max(worker["growth_mb"], 0.0) / 20.0), flush=True)
    return {"records": len(ds), "dataloader_worker": worker, "fast_path": fast}


# ------------------------------------------------------------------------------------ cases
def raw_case(workdir, quick, reps, results):
    """raw 28x28 records, ``scale``: the reference and our variants; returns whether the first TEST
    batch equals Caffe's."""
    raw = make_raw_db(workdir, 4096 if quick else 20000)
    ds = CaffeLMDBDataset(raw)
    t = CaffeTransform(RAW_TRANSFORM, "train")
    exact_raw = check_exact(raw, RAW_TRANSFORM, ds)
    per_sample = mx.gluon.data.DataLoader(ds.transform_first(t), batch_size=BATCH, num_workers=0)
    per_sample_gc = mx.gluon.data.DataLoader(ds.transform_first(t), batch_size=BATCH, num_workers=0,
                                             batchify_fn=gc.data.batchify)
    loader = gc.data.DataLoader(ds.transform_first(t), batch_size=BATCH)
    variants = [
        ("fast_path batches() numpy", endless(lambda: ds.batches(BATCH, t, as_numpy=True))),
        ("fast_path batches() NDArray", endless(lambda: ds.batches(BATCH, t))),
        ("gc.data.DataLoader workers=0", endless(lambda: loader)),
        ("DataLoader per-sample workers=0", endless(lambda: per_sample)),
        ("DataLoader workers=0 gc.data.batchify", endless(lambda: per_sample_gc)),
    ]
    count = 40 if quick else 200
    run_case("raw28", caffe_batches(raw, RAW_TRANSFORM), variants, reps, count, 8, results, target=1.0,
             settle=0.02)
    return exact_raw


def jpeg_case(workdir, quick, reps, results):
    """256x256 JPEG records, crop 227, mirror, mean: the reference and our variants; returns whether
    the first TEST batch (centre crop, no mirror) equals Caffe's."""
    jpeg, mean = make_jpeg_db(workdir, 192 if quick else 1024)
    jt = 'crop_size: 227 mirror: true mean_file: "%s"' % mean
    jds = CaffeLMDBDataset(jpeg)
    exact_jpeg = check_exact(jpeg, 'crop_size: 227 mean_file: "%s"' % mean, jds)
    tj = CaffeTransform(jt, "train")
    dl_proc = mx.gluon.data.DataLoader(jds.transform_first(tj), batch_size=BATCH, num_workers=2)
    dl_proc_gc = mx.gluon.data.DataLoader(jds.transform_first(tj), batch_size=BATCH, num_workers=2,
                                          batchify_fn=gc.data.batchify)
    dl_thread = mx.gluon.data.DataLoader(jds.transform_first(tj), batch_size=BATCH, num_workers=2,
                                         thread_pool=True)
    gc_loader = gc.data.DataLoader(jds.transform_first(tj), batch_size=BATCH, num_workers=2)
    variants = [
        ("DataLoader per-sample workers=2", endless(lambda: dl_proc)),
        ("DataLoader workers=2 gc.data.batchify", endless(lambda: dl_proc_gc)),
        ("DataLoader per-sample threads=2", endless(lambda: dl_thread)),
        ("gc.data.DataLoader workers=2", endless(lambda: gc_loader)),
        ("fast_path batches() workers=2", endless(lambda: jds.batches(BATCH, tj, num_workers=2))),
        ("fast_path batches() workers=0", endless(lambda: jds.batches(BATCH, tj))),
    ]
    count = 3 if quick else 12
    run_case("jpeg256", caffe_batches(jpeg, jt), variants, reps, count, 5, results, target=1.7,
             settle=0.5)
    return exact_jpeg


# ------------------------------------------------------------------------------------ main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small databases, few repetitions (< 60 s)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per variant")
    ap.add_argument("--workdir", default=None, help="where the databases are built (default: a temp dir)")
    ap.add_argument("--out", default=os.path.join(HERE, "out", "bench_data.json"))
    ap.add_argument("--no-memory", action="store_true", help="skip the RSS pass")
    ap.add_argument("--only", nargs="+", choices=CASES, default=None, metavar="CASE",
                    help="run only these cases (%s; default all)" % ", ".join(CASES))
    args = ap.parse_args(argv)
    quick = args.quick
    cases = set(args.only or CASES)
    reps = args.reps or (3 if quick else 7)
    workdir = args.workdir or tempfile.mkdtemp(prefix="gluon_caffe_bench_data_")
    os.makedirs(workdir, exist_ok=True)
    results = []
    started = time.time()
    print("bench_data: batch %d, %d repetitions, median [min-max] per batch; ratio = ours / caffe_data"
          " time (< 1 is faster); %s" % (BATCH, reps, "quick" if quick else "full"), flush=True)

    exact_raw = raw_case(workdir, quick, reps, results) if "raw28" in cases else None
    exact_jpeg = jpeg_case(workdir, quick, reps, results) if "jpeg256" in cases else None

    memory = None
    if "memory" in cases and not args.no_memory:
        memory = memory_case(make_raw_db(workdir, 20000 if quick else 100000), quick)

    out = {
        "benchmark": "bench_data", "quick": quick, "repetitions": reps, "batch_size": BATCH,
        "ratio": "ours / reference time per batch; speedup = reference / ours",
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                 "load_average": os.getloadavg()},
        "exact": {"raw28": exact_raw, "jpeg256_test_phase": exact_jpeg},
        "results": results, "memory": memory, "seconds": time.time() - started,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print("exact (first TEST batch equals Caffe's): raw28 %s, jpeg256 %s | %.0f s | wrote %s"
          % (exact_raw, exact_jpeg, out["seconds"], args.out), flush=True)
    if not args.workdir:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
