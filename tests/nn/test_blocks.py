"""CaffeLayer / CaffeLossBlock as Gluon blocks: phase, init, training, grad_req, save/load, threads."""

import threading

import mxnet as mx
import numpy as np
import pytest

import gluon_caffe as gc
from gluon_caffe.nn import CaffeLayer, CaffeLossBlock
from gluon_caffe.nn import _op
from tests.conftest import assert_close, one_layer_net

IP = ('layer { name: "fc" type: "InnerProduct" inner_product_param { num_output: %d '
      'weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.1 } } }')


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])
def test_dropout_follows_training_mode(hybridize):
    block = CaffeLayer('layer { type: "Dropout" dropout_param { dropout_ratio: 0.5 } }')
    block.initialize()
    if hybridize:
        block.hybridize()
    x = mx.nd.array(np.random.default_rng(0).uniform(1, 2, (20, 50)))
    assert_close(block(x).asnumpy(), x.asnumpy(), 0, "inference output")
    x.attach_grad()
    with mx.autograd.record():  # train_mode=True: Caffe's TRAIN phase
        y = block(x)
    y.backward(mx.nd.ones_like(y))
    y, g, xv = y.asnumpy(), x.grad.asnumpy(), x.asnumpy()
    kept = y != 0
    assert 0.3 < kept.mean() < 0.7, "dropout kept %.2f of the inputs" % kept.mean()
    assert_close(y[kept], 2 * xv[kept], 1e-6, "kept inputs scaled by 1/(1-ratio)")
    # Backward uses the very mask of this forward (kept in the Caffe layer between the two calls).
    assert_close(g, 2.0 * kept, 1e-6, "gradient")
    with mx.autograd.record(train_mode=False):
        y = block(x)
    assert_close(y.asnumpy(), xv, 0, "record(train_mode=False) output")


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])
def test_batchnorm_running_stats_match_caffenet_over_steps(hybridize):
    rng = np.random.default_rng(0)
    body = 'type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.8 }'
    block = CaffeLayer('layer { name: "L" %s }' % body)
    block.initialize()
    if hybridize:
        block.hybridize()
    net = gc.CaffeNet(one_layer_net(body, [(4, 3, 2, 2)]), phase="train")
    xs = [rng.standard_normal((4, 3, 2, 2)).astype("f4") for _ in range(3)]
    for x in xs:
        with mx.autograd.record():
            block(mx.nd.array(x))
        net.forward(x0=x)
    for role, want in zip(block.param_roles, net.params["L"]):
        assert_close(getattr(block, role).data().asnumpy().reshape(want.shape), want, 1e-6, role)
    assert block.scale_factor.data().asnumpy()[0] > 1  # 1 + 0.8 + 0.64: three updates happened
    # Inference uses the global statistics Caffe accumulated.
    test_net = gc.CaffeNet(one_layer_net(body, [(4, 3, 2, 2)]), phase="test")
    for dst, src in zip(test_net.params["L"], net.params["L"]):
        dst[...] = src
    assert_close(block(mx.nd.array(xs[0])).asnumpy(), test_net.forward(x0=xs[0])["y0"], 1e-6, "inference")
    assert all(getattr(block, r).grad_req == "null" for r in block.param_roles)


def test_default_init_runs_caffe_fillers():
    # The same draws as the Caffe layer set up right after the same seed.
    text = ('layer { type: "InnerProduct" inner_product_param { num_output: 30 '
            'weight_filler { type: "uniform" min: -0.5 max: 0.25 } bias_filler { type: "gaussian" std: 2 } } }')
    for _ in range(2):  # the second time every cache is warm: still the same values
        gc.set_random_seed(11)
        block = CaffeLayer(text)
        block.initialize()
        block(mx.nd.ones((3, 40)))
        gc.set_random_seed(11)
        runner = gc.LayerRunner(text)
        runner.setup([(3, 40)])
        assert_close(block.weight.data().asnumpy(), runner.params[0], 0, "weight")
        assert np.abs(runner.params[0]).max() > 0
        assert -0.5 <= runner.params[0].min() and runner.params[0].max() <= 0.25
    # The bias is filled by its own set-up: the draws after the weights'.
    gc.set_random_seed(11)
    runner = gc.LayerRunner(text)
    runner.setup([(3, 40)])
    gc.set_random_seed(11)
    block = CaffeLayer(text)
    block.initialize()
    block(mx.nd.ones((3, 40)))
    assert block.bias.data().shape == (30,) and 1 < block.bias.data().asnumpy().std() < 3


def test_user_initializers_override_fillers():
    block = CaffeLayer(IP % 5, weight_initializer=mx.init.Constant(0.25), bias_initializer="zeros")
    block.initialize()
    block(mx.nd.ones((3, 4)))
    assert np.all(block.weight.data().asnumpy() == 0.25) and np.all(block.bias.data().asnumpy() == 0)
    plain = CaffeLayer(IP % 5, use_fillers=False)
    plain.initialize(mx.init.Constant(-1))
    plain(mx.nd.ones((3, 4)))
    assert np.all(plain.weight.data().asnumpy() == -1)


def test_lr_mult_and_decay_mult_become_parameter_attributes():
    block = CaffeLayer('layer { type: "Convolution" param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 } '
                       'convolution_param { num_output: 2 kernel_size: 1 } }')
    assert (block.weight.lr_mult, block.weight.wd_mult) == (1, 1)
    assert (block.bias.lr_mult, block.bias.wd_mult) == (2, 0)
    frozen = CaffeLayer('layer { type: "InnerProduct" param { lr_mult: 0 } inner_product_param { num_output: 2 } }')
    assert frozen.weight.grad_req == "null" and frozen.bias.grad_req == "write"


def _mlp():
    net = mx.gluon.nn.HybridSequential()
    with net.name_scope():
        net.add(CaffeLayer(IP % 16), CaffeLayer('layer { type: "TanH" }'), CaffeLayer(IP % 3))
    return net


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])
def test_trainer_reduces_caffe_loss(hybridize):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype("f4")
    y = (x[:, :3].argmax(axis=1)).astype("f4")
    gc.set_random_seed(1)
    net = _mlp()
    loss_fn = CaffeLossBlock('layer { type: "SoftmaxWithLoss" }')
    net.initialize()
    loss_fn.initialize()
    if hybridize:
        net.hybridize()
        loss_fn.hybridize()
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5})
    xs, ys = mx.nd.array(x), mx.nd.array(y)
    losses = []
    for _ in range(30):
        with mx.autograd.record():
            loss = loss_fn(net(xs), ys)
        loss.backward()
        trainer.step(1)  # Caffe's loss is already normalized by the batch
        losses.append(float(loss.asnumpy()[0]))
    assert losses[-1] < 0.5 * losses[0], losses
    acc = (net(xs).asnumpy().argmax(axis=1) == y).mean()
    assert acc > 0.8


def test_save_and_load_parameters(tmp_path):
    net = _mlp()
    net.initialize()
    x = mx.nd.array(np.random.default_rng(0).standard_normal((2, 6)))
    want = net(x).asnumpy()
    path = str(tmp_path / "mlp.params")
    net.save_parameters(path)
    other = _mlp()
    other.load_parameters(path)
    other.hybridize()
    assert_close(other(x).asnumpy(), want, 0, "reloaded output")
    assert sorted(k.split("_", 1)[1] for k in other.collect_params()) == sorted(
        k.split("_", 1)[1] for k in net.collect_params())


@pytest.mark.parametrize("hybridize", [False, True, "static"], ids=["imperative", "hybrid", "static"])
def test_grad_req_add_accumulates_without_double_counting(hybridize):
    block = CaffeLayer(IP % 3)
    block.initialize()
    if hybridize == "static":  # memory planned once: the input's reshape must still honour "add"
        block.hybridize(static_alloc=True, static_shape=True)
    elif hybridize:
        block.hybridize()
    x = mx.nd.array(np.random.default_rng(0).standard_normal((4, 5)))

    def grads():
        x.attach_grad(grad_req="add")
        x.grad[:] = 0
        block.collect_params().zero_grad()
        for _ in range(3):
            with mx.autograd.record():
                y = block(x)
            y.backward()
        return x.grad.asnumpy(), block.weight.grad().asnumpy(), block.bias.grad().asnumpy()

    block.collect_params().setattr("grad_req", "write")
    x.attach_grad()
    with mx.autograd.record():
        y = block(x)
    y.backward()
    once = x.grad.asnumpy(), block.weight.grad().asnumpy(), block.bias.grad().asnumpy()
    with mx.autograd.record():
        y = block(x)
    y.backward()  # "write": a second pass replaces, Caffe's accumulation must not leak through
    for a, b in zip(once, (x.grad.asnumpy(), block.weight.grad().asnumpy(), block.bias.grad().asnumpy())):
        assert_close(b, a, 1e-6, "write twice")
    block.collect_params().setattr("grad_req", "add")
    for a, b in zip(once, grads()):
        assert_close(b, 3 * a, 1e-6, "add three times")


def test_multiple_outputs_inside_a_hybridized_parent():
    class Net(mx.gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            with self.name_scope():
                self.slice = CaffeLayer('layer { type: "Slice" slice_param { axis: 1 slice_point: 2 } }', num_out=2)
                self.cat = CaffeLayer('layer { type: "Concat" concat_param { axis: 1 } }', num_data=2)

        def hybrid_forward(self, F, x):
            a, b = self.slice(x)
            return self.cat(b * 2, a)

    net = Net()
    net.initialize()
    net.hybridize()
    x = np.arange(10, dtype="f4").reshape(2, 5)
    xa = mx.nd.array(x)
    xa.attach_grad()
    with mx.autograd.record():
        y = net(xa)
    y.backward()
    assert_close(y.asnumpy(), np.concatenate([2 * x[:, 2:], x[:, :2]], axis=1), 0, "output")
    assert_close(xa.grad.asnumpy(), np.array([[1, 1, 2, 2, 2]] * 2), 0, "gradient")


def test_two_threads_two_nets():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 8)).astype("f4")
    nets, want = [], []
    for width in (5, 7):
        net = mx.gluon.nn.HybridSequential()
        net.add(CaffeLayer(IP % width), CaffeLayer('layer { type: "ReLU" }'))
        net.initialize()
        net.hybridize()
        nets.append(net)
    for net in nets:
        net(mx.nd.array(x))
        w, b = net[0].weight.data().asnumpy(), net[0].bias.data().asnumpy()
        want.append(np.maximum(x @ w.T + b, 0))
    errors = []

    def work(i):
        try:
            for _ in range(30):
                got = nets[i](mx.nd.array(x)).asnumpy()
                assert_close(got, want[i], 1e-5, "thread %d" % i)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_runners_are_reused_across_imperative_calls():
    block = CaffeLayer(IP % 4)
    block.initialize()
    x = mx.nd.ones((2, 3))
    block(x).wait_to_read()
    key = _op._pool_key(block._spec, [(2, 3)], np.float32)
    for _ in range(20):
        block(x).wait_to_read()
    mx.nd.waitall()
    # One runner serves every call in turn: the operator instances give it back when MXNet drops them.
    assert len(_op._POOL._idle.get(key, [])) <= 2
