"""Shared helpers of the converter tests: run a net in real Caffe and converted, compare."""

import os
import tempfile

import mxnet as mx
import numpy as np

import gluon_caffe
from gluon_caffe.converter import import_model
from gluon_caffe.converter.importer import convert

INPUT_TPL = 'name: "t"\nlayer { name: "%s" type: "Input" top: "%s" input_param { shape { dim: %s } } }\n'


def net_text(layers, inputs=(("data", (2, 3, 8, 8)),)):
    """Prototxt text: Input layers for ``inputs`` then the given layer text."""
    head = "".join(INPUT_TPL % (n, n, " dim: ".join(str(d) for d in s)) for n, s in inputs)
    return head.replace('name: "t"\n', "", head.count('name: "t"\n') - 1) + layers


def randomize(net, rng, positive_names=()):
    """Give every Caffe parameter random values (through the writable views)."""
    for layer, params in net.params.items():
        for i, p in enumerate(params):
            if layer in positive_names or (net.layer_type(layer) == "BatchNorm" and i == 1):
                p[...] = rng.uniform(0.5, 2.0, p.shape)
            elif net.layer_type(layer) == "BatchNorm" and i == 2:
                p[...] = rng.uniform(0.5, 2.0, p.shape)
            else:
                # Fan-in scaling keeps activations O(1), so softmax outputs do not saturate.
                fan_in = int(np.prod(p.shape[1:])) if p.ndim > 1 else 1
                p[...] = rng.randn(*p.shape) / np.sqrt(fan_in)


def run_mx(block_or_sym, arg_params, aux_params, inputs, hybridize):
    """Run an imported SymbolBlock on ``inputs`` (dict), imperative or hybridized."""
    block = block_or_sym
    if hybridize:
        block.hybridize()
    outs = block(*[mx.nd.array(v) for v in inputs.values()])
    if isinstance(outs, mx.nd.NDArray):
        outs = [outs]
    return [o.asnumpy() for o in outs]


def compare(prototxt, inputs, seed=0, rtol=1e-4, tmpdir=None, caffemodel=None, convert_kw=None,
            positive=(), check=None, blobs_to_check=None):
    """Convert ``prototxt`` (+ random weights) and compare every output with real Caffe.

    Returns the max relative diff (abs diff / max |output|) over outputs.
    """
    rng = np.random.RandomState(seed)
    net = gluon_caffe.CaffeNet(prototxt, caffemodel)
    if caffemodel is None:
        randomize(net, rng, positive)
    tmp = tempfile.mkdtemp(dir=tmpdir)
    model = os.path.join(tmp, "w.caffemodel")
    net.save(model)
    ref = net.forward(**inputs)
    worst = 0.0
    for hyb in (False, True):
        block = import_model(prototxt, model, **(convert_kw or {}))
        names = block.caffe_output_names
        outs = run_mx(block, None, None, {n: inputs[n] for n in _input_order(prototxt, inputs)}, hyb)
        assert len(outs) == len(names)
        for n, o in zip(names, outs):
            r = ref[n]
            assert o.size == r.size, (n, o.shape, r.shape)
            o = o.reshape(r.shape)
            scale = max(float(np.abs(r).max()), 1e-6)
            diff = float(np.abs(o - r).max()) / scale
            assert diff <= rtol, "blob %r (hybridize=%s): max abs diff %.3g x max|out| (tol %g)" % (
                n, hyb, diff, rtol)
            worst = max(worst, diff)
    # Every intermediate blob too, not only the outputs.
    converted = convert(prototxt, model, details=True, **(convert_kw or {}))
    names = [b for b in converted.blobs if b not in inputs and b in ref
             and not converted.blobs[b].name.startswith("__")]
    if names and not (convert_kw or {}).get("rgb") and not (convert_kw or {}).get("fuse"):
        group = mx.sym.Group([converted.blobs[b] for b in names])
        args = {n: mx.nd.array(inputs[n]) for n in converted.input_names}
        args.update(converted.arg_params)
        exe = group.bind(mx.cpu(), args, aux_states=converted.aux_params, grad_req="null")
        for b, o in zip(names, exe.forward(is_train=False)):
            r = ref[b]
            o = o.asnumpy().reshape(r.shape)
            scale = max(float(np.abs(r).max()), 1e-6)
            diff = float(np.abs(o - r).max()) / scale
            assert diff <= rtol, "blob %r: max abs diff %.3g x max|blob| (tol %g)" % (b, diff, rtol)
            worst = max(worst, diff)
    return worst


def _input_order(prototxt, inputs):
    converted = convert(prototxt, details=True)
    return [n for n in converted.input_names if n in inputs]
