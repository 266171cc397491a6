"""The C++ operator (gluon_caffe_CaffeOp, MXNet lib_api): in use, phase in every mode, req, errors."""

import json
import os
import subprocess
import sys
import textwrap

import mxnet as mx
import numpy as np
import pytest

import gluon_caffe as gc
from gluon_caffe.nn import CaffeLayer, _lib
from tests.conftest import assert_close

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DROPOUT = 'layer { name: "drop" type: "Dropout" dropout_param { dropout_ratio: 0.5 } }'
IP = ('layer { name: "fc" type: "InnerProduct" inner_product_param { num_output: 3 '
      'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.2 } } }')


def test_the_cxx_operator_is_in_use():
    # The blocks' fast path must be on wherever the package is built (CI included).
    assert _lib.available(), _lib.load_error()
    block = CaffeLayer('layer { type: "TanH" }')
    block.initialize()
    block.hybridize()
    block(mx.nd.ones((1, 2)))
    graph = json.loads(block._cached_graph[1].tojson())
    assert [n["op"] for n in graph["nodes"] if n["op"] != "null"] == [_lib.LIB_OP]


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static_shape"])
def test_phase_follows_autograd_in_every_hybridized_mode(static):
    block = CaffeLayer(DROPOUT)
    block.initialize()
    block.hybridize(static_alloc=static, static_shape=static)
    x = mx.nd.array(np.random.default_rng(0).uniform(1, 2, (10, 40)))

    def dropped(y):
        return float((y.asnumpy() == 0).mean())

    for _ in range(2):  # switching back and forth: the graph is the same, the phase is not
        assert dropped(block(x)) == 0
        with mx.autograd.record():
            assert 0.3 < dropped(block(x)) < 0.7
        with mx.autograd.record(train_mode=False):  # recording, but inference: no dropout
            assert dropped(block(x)) == 0
        with mx.autograd.train_mode():  # training without recording: dropout
            assert 0.3 < dropped(block(x)) < 0.7


def test_grad_req_switch_after_hybridize_rebuilds_the_graph():
    block = CaffeLayer(IP)
    block.initialize()
    block.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.array(np.random.default_rng(1).standard_normal((4, 5)))

    def step():
        with mx.autograd.record():
            y = block(x)
        y.backward()

    step()
    once = block.weight.grad().asnumpy().copy()
    block.weight.grad_req = "add"
    block.weight.zero_grad()
    step()
    step()
    assert_close(block.weight.grad().asnumpy(), 2 * once, 1e-6, "add twice")
    block.weight.grad_req = "null"
    step()  # no gradient buffer at all: the operator must not write one
    block.weight.grad_req = "write"
    step()
    assert_close(block.weight.grad().asnumpy(), once, 1e-6, "write again")


def test_data_gradient_add_inside_a_hybridized_parent():
    net = mx.gluon.nn.HybridSequential()
    with net.name_scope():
        net.add(CaffeLayer(IP), mx.gluon.nn.Dense(2))
    net.initialize()
    net.hybridize()
    x = mx.nd.array(np.random.default_rng(2).standard_normal((4, 5)))
    x.attach_grad()
    with mx.autograd.record():
        y = net(x)
    y.backward()
    once = x.grad.asnumpy().copy()
    assert np.abs(once).max() > 0
    x.attach_grad(grad_req="add")
    x.grad[:] = 0
    for _ in range(3):
        with mx.autograd.record():
            y = net(x)
        y.backward()
    assert_close(x.grad.asnumpy(), 3 * once, 1e-6, "data gradient added three times")


class _Parent(mx.gluon.HybridBlock):
    def __init__(self, child):
        super().__init__()
        with self.name_scope():
            self.child = child

    def hybrid_forward(self, F, *inputs):
        return self.child(*inputs)


def test_errors_inside_a_graph_name_the_layer_once():
    # Inside a parent's graph the shapes reach Caffe through the C++ operator's shape inference.
    messages = []
    for size in (4, 5):
        net = _Parent(CaffeLayer('layer { name: "cropper" type: "Crop" crop_param { axis: 2 offset: 9 } }',
                                 num_data=2))
        net.initialize()
        net.hybridize()
        with pytest.raises(mx.base.MXNetError) as err:
            net(mx.nd.ones((1, 1, 6, 6)), mx.nd.ones((1, 1, size, size)))
            mx.nd.waitall()
        messages.append(str(err.value))
    for size, message in zip((4, 5), messages):
        assert "layer 'cropper' (Crop)" in message and "size %d and offset 9" % size in message, message
        # lib_api keeps every message a library ever queued; an older error must not come back.
        assert message.count("cropper' (Crop)") == 1, message
    net = _Parent(CaffeLayer(IP))  # and the process goes on
    net.initialize()
    net.hybridize()
    assert net(mx.nd.ones((2, 5))).shape == (2, 3)


@pytest.mark.parametrize("attrs, message", [
    ({"num_data": "two"}, "attribute num_data must be a count, got 'two'"),
    ({"num_out": "-1"}, "attribute num_out must be a count, got '-1'"),
    ({"prototxt": ""}, "attribute prototxt is missing"),
])
def test_bad_operator_attributes_are_named(attrs, message):
    # What MXNet asks of the operator on every call (its input count) is read without parsing the
    # prototxt, but a bad attribute still gets a message saying which one.
    kwargs = dict(prototxt=IP, num_data="1", num_out="1", blobs="weight,bias")
    kwargs.update(attrs)
    with pytest.raises(mx.base.MXNetError, match=message):
        mx.sym.gluon_caffe_CaffeOp(mx.sym.var("x"), mx.sym.var("w"), mx.sym.var("b"), **kwargs)


def test_python_operator_switch_still_gives_caffes_numbers(tmp_path):
    # GLUON_CAFFE_OPERATOR=python routes every block through the Python CustomOp: same numbers.
    block = CaffeLayer(IP)
    block.initialize()
    x = np.random.default_rng(3).standard_normal((4, 5)).astype("f4")
    want = block(mx.nd.array(x)).asnumpy()
    block.save_parameters(str(tmp_path / "ip.params"))
    np.save(str(tmp_path / "x.npy"), x)
    code = textwrap.dedent("""
        import numpy as np, mxnet as mx
        import gluon_caffe as gc
        from gluon_caffe.nn import _lib
        assert not _lib.available()
        block = gc.nn.CaffeLayer(%r)
        block.load_parameters(%r)
        block.hybridize()
        np.save(%r, block(mx.nd.array(np.load(%r))).asnumpy())
    """ % (IP, str(tmp_path / "ip.params"), str(tmp_path / "got.npy"), str(tmp_path / "x.npy")))
    env = dict(os.environ, GLUON_CAFFE_OPERATOR="python", PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_close(np.load(str(tmp_path / "got.npy")), want, 1e-6, "python operator")


def test_grad_req_switch_inside_a_parent_needs_hybridize_again():
    # README: inside a hybridized parent, call hybridize() again after changing a grad_req.
    net = _Parent(CaffeLayer(IP))
    net.initialize()
    net.hybridize()
    x = mx.nd.array(np.random.default_rng(4).standard_normal((4, 5)))

    def step():
        with mx.autograd.record():
            y = net(x)
        y.backward()

    step()
    once = net.child.weight.grad().asnumpy().copy()
    net.child.weight.grad_req = "add"
    net.hybridize()
    net.child.weight.zero_grad()
    step()
    step()
    assert_close(net.child.weight.grad().asnumpy(), 2 * once, 1e-6, "add twice")
