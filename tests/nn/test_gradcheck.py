"""Gradients of CaffeLayer / CaffeLossBlock against central finite differences (float64).

Also the losses a CaffeNet cannot serve as gradient reference: HingeLoss keeps its margins in the
bottom diff between Forward and Backward, which CaffeNet.backward clears first.
"""

import mxnet as mx
import numpy as np
import pytest

import gluon_caffe as gc
from gluon_caffe.nn import CaffeLayer, CaffeLossBlock
from tests.conftest import assert_close, one_layer_net
from tests.nn._harness import make_input, run_block_and_net


def numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        old = x[idx]
        x[idx] = old + eps
        up = f(x)
        x[idx] = old - eps
        down = f(x)
        x[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


def check_block(block, inputs, grad_inputs, weights=(), hybridize=False, rtol=1e-6):
    """Autograd gradients of sum(out * r) (or of a loss) against finite differences."""
    block.initialize()
    if hybridize:
        block.hybridize()
    arrays = [mx.nd.array(x, dtype="float64") for x in inputs]
    out = block(*arrays)
    r = np.random.default_rng(1).standard_normal(out.shape)

    def value(*xs):
        return float((block(*[mx.nd.array(x, dtype="float64") for x in xs]).asnumpy() * r).sum())

    for a in arrays:
        a.attach_grad()
    with mx.autograd.record():
        out = block(*arrays)
    out.backward(mx.nd.array(r, dtype="float64"))
    for i in grad_inputs:
        xs = [x.copy() for x in inputs]
        num = numeric_grad(lambda v: value(*(xs[:i] + [v] + xs[i + 1:])), xs[i])
        assert np.abs(num).max() > 0
        assert_close(arrays[i].grad.asnumpy(), num, rtol, "input %d" % i)
    for role in weights:
        param = getattr(block, role)
        w = param.data().asnumpy().copy()

        def at(v):
            param.set_data(mx.nd.array(v, dtype="float64"))
            return value(*inputs)
        num = numeric_grad(at, w)
        param.set_data(mx.nd.array(w, dtype="float64"))
        assert np.abs(num).max() > 0
        assert_close(param.grad().asnumpy(), num, rtol, role)


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])
def test_innerproduct_gradcheck(hybridize):
    rng = np.random.default_rng(0)
    block = CaffeLayer('layer { type: "InnerProduct" inner_product_param { num_output: 3 '
                       'weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 } } }',
                       dtype="float64")
    check_block(block, [rng.standard_normal((2, 4))], [0], ["weight", "bias"], hybridize)


def test_convolution_gradcheck():
    rng = np.random.default_rng(0)
    block = CaffeLayer('layer { type: "Convolution" convolution_param { num_output: 2 kernel_size: 2 stride: 1 '
                       'group: 2 weight_filler { type: "gaussian" std: 1 } } }', dtype="float64")
    check_block(block, [rng.standard_normal((1, 2, 3, 3))], [0], ["weight"])


def test_batchnorm_train_gradcheck():
    rng = np.random.default_rng(0)
    block = CaffeLayer('layer { type: "BatchNorm" }', phase="train", dtype="float64")
    check_block(block, [rng.standard_normal((3, 2, 2))], [0], rtol=1e-5)


@pytest.mark.parametrize("norm", ["L1", "L2"])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])
def test_hingeloss_forward_vs_caffenet_gradient_vs_numeric(norm, hybridize):
    rng = np.random.default_rng(0)
    body = 'type: "HingeLoss" hinge_loss_param { norm: %s }' % norm
    x = rng.standard_normal((5, 4))
    label = rng.integers(0, 4, (5,)).astype("float64")
    net = gc.CaffeNet(one_layer_net(body, [x.shape, label.shape]), dtype="float64")
    want = net.forward(x0=x, x1=label)["y0"]
    block = CaffeLossBlock('layer { %s }' % body, grad_scale=0.5, dtype="float64")
    block.initialize()
    if hybridize:
        block.hybridize()
    xa, la = mx.nd.array(x, dtype="float64"), mx.nd.array(label, dtype="float64")
    xa.attach_grad()
    with mx.autograd.record():
        loss = block(xa, la)
    loss.backward()
    assert_close(loss.asnumpy().reshape(()), want, 1e-12, "loss")
    num = numeric_grad(lambda v: float(block(mx.nd.array(v, dtype="float64"), la).asnumpy()[0]), x.copy())
    assert np.abs(num).max() > 0
    assert_close(xa.grad.asnumpy(), 0.5 * num, 1e-6, "gradient")


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])
def test_infogainloss_with_matrix_file(tmp_path, hybridize):
    from gluon_caffe.proto import caffe_pb2
    rng = np.random.default_rng(0)
    h = rng.uniform(0, 1, (4, 4))
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([1, 1, 4, 4])
    blob.data.extend(h.ravel().tolist())
    path = tmp_path / "H.binaryproto"
    path.write_bytes(blob.SerializeToString())
    body = 'type: "InfogainLoss" infogain_loss_param { source: "%s" }' % path
    run_block_and_net(body, [((5, 4), "prob"), ((5,), "labels:4")], loss=True, dtype="float64",
                      hybridize=hybridize, nograd=(1,))


def test_infogainloss_matrix_input_forward():
    rng = np.random.default_rng(0)
    x, label, h = (make_input(rng, (5, 4), "prob", "float32"), make_input(rng, (5,), "labels:4", "float32"),
                   make_input(rng, (1, 1, 4, 4), "unit", "float32"))
    net = gc.CaffeNet(one_layer_net('type: "InfogainLoss"', [x.shape, label.shape, h.shape]))
    want = net.forward(x0=x, x1=label, x2=h)["y0"]
    block = CaffeLossBlock('layer { type: "InfogainLoss" }', num_data=3)
    block.initialize()
    got = block(mx.nd.array(x), mx.nd.array(label), mx.nd.array(h))
    assert_close(got.asnumpy().reshape(()), want, 1e-6, "loss")
