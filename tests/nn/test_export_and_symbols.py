"""Exported CaffeLayer graphs in a fresh process, and the seed's Symbol/Module API (gc.sym)."""

import os
import subprocess
import sys
import textwrap

import mxnet as mx
import numpy as np

import gluon_caffe.sym as gcsym
from gluon_caffe.nn import CaffeLayer
from tests.conftest import assert_close

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _net():
    net = mx.gluon.nn.HybridSequential()
    with net.name_scope():
        net.add(CaffeLayer('layer { type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 '
                           'weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.2 } } }'),
                CaffeLayer('layer { type: "BatchNorm" }'),
                CaffeLayer('layer { type: "ReLU" }'),
                mx.gluon.nn.Dense(3))
    return net


def _run(code, env_extra=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


def test_export_then_symbolblock_imports_in_fresh_process(tmp_path):
    net = _net()
    net.initialize()
    net.hybridize()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype("f4")
    with mx.autograd.record():  # one TRAIN step: the BatchNorm statistics become non-trivial
        net(mx.nd.array(x))
    want = net(mx.nd.array(x)).asnumpy()
    prefix = str(tmp_path / "model")
    net.export(prefix, epoch=0)
    np.save(str(tmp_path / "x.npy"), x)
    np.save(str(tmp_path / "want.npy"), want)
    code = """
        import numpy as np, mxnet as mx
        import gluon_caffe
        net = mx.gluon.SymbolBlock.imports(%r, ["data"], %r)
        got = net(mx.nd.array(np.load(%r))).asnumpy()
        want = np.load(%r)
        assert np.array_equal(got, want), np.abs(got - want).max()
        print("identical")
    """ % (prefix + "-symbol.json", prefix + "-0000.params", str(tmp_path / "x.npy"), str(tmp_path / "want.npy"))
    done = _run(code)
    assert done.returncode == 0 and "identical" in done.stdout, done.stdout + done.stderr


def test_imports_without_gluon_caffe_names_the_package(tmp_path):
    block = CaffeLayer('layer { type: "TanH" }')
    block.initialize()
    block.hybridize()
    block(mx.nd.ones((1, 2)))
    prefix = str(tmp_path / "tanh")
    block.export(prefix)
    done = _run("""
        import mxnet as mx
        mx.gluon.SymbolBlock.imports(%r, ["data"])
    """ % (prefix + "-symbol.json"))
    assert done.returncode != 0
    # The operator's name is the package's: gluon_caffe_CaffeOp (the C++ operator the blocks use)
    # or the Python CustomOp gluon_caffe.CaffeOp (symbols, converter fallbacks).
    assert "gluon_caffe_CaffeOp is not registered" in done.stderr or "gluon_caffe.CaffeOp" in done.stderr, \
        done.stderr[-2000:]


def test_seed_mlp_verbatim_trains_with_module():
    # The seed's code with only `mx.sym.CaffeOp` -> `gc.sym.CaffeOp` (and CaffeLoss).
    import gluon_caffe as gc
    import gluon_caffe.sym  # noqa: F401  (gc.sym)

    data = mx.sym.Variable('data')
    fc1  = gc.sym.CaffeOp(data_0=data, num_weight=2, name='fc1', prototxt="layer{type:\"InnerProduct\" inner_product_param{num_output: 128} }")  # noqa: E501,E221
    act1 = gc.sym.CaffeOp(data_0=fc1, prototxt="layer{type:\"TanH\"}")
    fc2  = gc.sym.CaffeOp(data_0=act1, num_weight=2, name='fc2', prototxt="layer{type:\"InnerProduct\" inner_product_param{num_output: 64} }")  # noqa: E501,E221
    act2 = gc.sym.CaffeOp(data_0=fc2, prototxt="layer{type:\"TanH\"}")
    fc3 = gc.sym.CaffeOp(data_0=act2, num_weight=2, name='fc3', prototxt="layer{type:\"InnerProduct\" inner_product_param{num_output: 10}}")  # noqa: E501
    label = mx.sym.Variable('softmax_label')
    mlp = gc.sym.CaffeLoss(data=fc3, label=label, grad_scale=1, name='softmax', prototxt="layer{type:\"SoftmaxWithLoss\"}")  # noqa: E501

    assert mlp.list_arguments() == ['data', 'fc1_weight', 'fc1_bias', 'fc2_weight', 'fc2_bias',
                                    'fc3_weight', 'fc3_bias', 'softmax_label']
    rng = np.random.RandomState(0)
    x = rng.rand(320, 20).astype("f4")
    y = (x @ rng.randn(20, 10)).argmax(axis=1).astype("f4")
    it = mx.io.NDArrayIter(x, y, batch_size=32, shuffle=False, label_name='softmax_label')
    mod = mx.mod.Module(mlp, data_names=['data'], label_names=['softmax_label'], context=mx.cpu())
    mod.bind(it.provide_data, it.provide_label)
    mx.random.seed(0)
    mod.init_params(mx.init.Xavier())
    mod.init_optimizer(optimizer="sgd", optimizer_params={"learning_rate": 0.5})

    def epoch():
        it.reset()
        total = 0.0
        for batch in it:
            mod.forward(batch, is_train=True)
            total += float(mod.get_outputs()[0].asnumpy()[0])
            mod.backward()
            mod.update()
        return total / 10

    losses = [epoch() for _ in range(6)]
    assert losses[-1] < 0.75 * losses[0], losses


def test_symbol_caffeop_matches_block_and_keeps_aux_and_mults():
    data = mx.sym.Variable("data")
    bn = gcsym.CaffeOp(data, prototxt='layer { type: "BatchNorm" }', name="bn")
    assert bn.list_auxiliary_states() == ["bn_mean", "bn_variance", "bn_scale_factor"]
    conv = gcsym.CaffeOp(data, name="c", prototxt='layer { type: "Convolution" param { lr_mult: 1 } '
                         'param { lr_mult: 2 decay_mult: 0 } convolution_param { num_output: 2 kernel_size: 1 } }')
    attrs = conv.attr_dict()
    assert attrs["c_bias"]["__lr_mult__"] == "2.0" and attrs["c_bias"]["__wd_mult__"] == "0.0"
    # Executor path, weights from a CaffeLayer: the same numbers.
    block = CaffeLayer('layer { type: "Convolution" convolution_param { num_output: 2 kernel_size: 1 '
                       'weight_filler { type: "gaussian" std: 1 } } }')
    block.initialize()
    x = mx.nd.array(np.random.default_rng(0).standard_normal((2, 3, 2, 2)))
    want = block(x).asnumpy()
    sym = gcsym.CaffeOp(data, name="c", prototxt=block.prototxt)
    out = sym.bind(mx.cpu(), {"data": x, "c_weight": block.weight.data(), "c_bias": block.bias.data()}).forward()
    assert_close(out[0].asnumpy(), want, 1e-6, "symbol output")


def test_caffeloss_symbol_grad_scale_without_head_gradient():
    data, label = mx.sym.Variable("data"), mx.sym.Variable("label")
    loss = gcsym.CaffeLoss(data=data, label=label, grad_scale=3, prototxt='layer { type: "EuclideanLoss" }')
    a = np.random.default_rng(0).standard_normal((4, 3)).astype("f4")
    b = np.zeros_like(a)
    grads = {"data": mx.nd.zeros(a.shape), "label": mx.nd.zeros(a.shape)}
    exe = loss.bind(mx.cpu(), {"data": mx.nd.array(a), "label": mx.nd.array(b)}, args_grad=grads)
    out = exe.forward(is_train=True)
    exe.backward()  # a loss: no head gradient needed
    assert_close(out[0].asnumpy(), [(a ** 2).sum() / 8], 1e-6, "loss")
    assert_close(grads["data"].asnumpy(), 3 * a / 4, 1e-6, "data gradient x grad_scale")
    assert_close(grads["label"].asnumpy(), -3 * a / 4, 1e-6, "label gradient x grad_scale")
