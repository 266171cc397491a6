"""Runs a CaffeLayer / CaffeLossBlock and a CaffeNet holding the same layer with the same weights."""

import mxnet as mx
import numpy as np

import gluon_caffe as gc
from gluon_caffe.nn import CaffeLayer, CaffeLossBlock
from tests.conftest import assert_close, one_layer_net

TOL = {"float32": 1e-6, "float64": 1e-12}


def make_input(rng, shape, kind, dtype):
    """Random input of one kind: normal, positive, prob (rows sum to 1 over axis 1), labels:C,
    index:D (integers below D), binary (0/1), unit (in [0, 1])."""
    if kind == "normal":
        x = rng.standard_normal(shape)
    elif kind == "positive":
        x = rng.uniform(0.5, 2.0, shape)
    elif kind == "unit":
        x = rng.uniform(0.0, 1.0, shape)
    elif kind == "prob":
        x = rng.uniform(0.1, 1.0, shape)
        x /= x.sum(axis=1, keepdims=True)
    elif kind == "binary":
        x = rng.integers(0, 2, shape)
    elif kind.startswith(("labels:", "index:")):
        x = rng.integers(0, int(kind.split(":")[1]), shape)
    else:
        raise ValueError(kind)
    return np.asarray(x, dtype=dtype)


def run_block_and_net(body, inputs, num_out=1, dtype="float32", hybridize=False, phase="test", loss=False,
                      grad_scale=1.0, loss_weight=1.0, nograd=(), zero_grads=(), force_backward=True, rng=None,
                      check_params=True):
    """Forward + backward through the block and through CaffeNet; assert everything matches.

    Returns the block, its outputs and the reference blobs (for further checks).
    """
    rng = rng or np.random.default_rng(0)
    shapes = [s for s, _ in inputs]
    prototxt = 'layer { name: "L" %s }' % body
    if loss:
        block = CaffeLossBlock(prototxt, grad_scale=grad_scale, num_data=len(inputs), num_out=num_out, dtype=dtype)
    else:
        block = CaffeLayer(prototxt, num_data=len(inputs), num_out=num_out, dtype=dtype)
    block.initialize()
    if hybridize:
        block.hybridize()
    xs_np = [make_input(rng, s, k, dtype) for s, k in inputs]
    xs = [mx.nd.array(x, dtype=dtype) for x in xs_np]
    block(*xs)  # inference-mode call: deferred initialization, no state changes (TEST phase)
    before = [getattr(block, r).data().asnumpy().copy() for r in block.param_roles]
    for i, x in enumerate(xs):
        if i not in nograd:
            x.attach_grad()
    with mx.autograd.record(train_mode=(phase == "train")):
        outs = block(*xs)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    if loss:
        mx.autograd.backward(outs[:1])
        dys = None
    else:
        dys = [make_input(rng, o.shape, "normal", dtype) for o in outs]
        mx.autograd.backward(outs, [mx.nd.array(d, dtype=dtype) for d in dys])

    net = gc.CaffeNet(one_layer_net(body, shapes, num_out, force_backward=force_backward), phase=phase, dtype=dtype)
    for dst, src in zip(net.params.get("L", []), before):
        dst[...] = src.reshape(dst.shape)  # a 0-d Caffe blob is (1,) in MXNet
    ref = net.forward(**{"x%d" % i: x for i, x in enumerate(xs_np)})
    tol = TOL[dtype]
    for i, out in enumerate(outs):
        want = ref["y%d" % i]
        got = out.asnumpy()
        assert got.dtype == np.dtype(dtype)
        if want.ndim == 0:  # MXNet has no 0-d arrays: a scalar top comes out as (1,)
            assert got.shape == (1,)
            got = got.reshape(())
        assert_close(got, want, tol, "forward output %d" % i)
    # Auxiliary state (BatchNorm's statistics) as Caffe left it after forward.
    for role, want in zip(block.param_roles, net.params.get("L", [])):
        if getattr(block, role).grad_req == "null":
            assert_close(getattr(block, role).data().asnumpy().reshape(want.shape), want, tol, "state %s" % role)
    # CaffeNet.backward clears every diff, the loss top's seed too: give Caffe's seed back.
    seeds = {"y0": np.asarray(loss_weight, dtype=dtype)} if loss else {"y%d" % i: d.reshape(ref["y%d" % i].shape) for i, d in enumerate(dys)}
    diffs = net.backward(**seeds)
    for i, x in enumerate(xs):
        if i in nograd:
            continue
        if i in zero_grads:  # Caffe leaves it alone (Crop's reference input): zeros, never garbage
            assert not np.any(x.grad.asnumpy()), "input %d should get a zero gradient" % i
            continue
        want = diffs["x%d" % i] * grad_scale
        assert np.abs(want).max() > 0, "reference gradient of input %d is zero: the check proves nothing" % i
        assert_close(x.grad.asnumpy(), want, tol, "input gradient %d" % i)
    if check_params:
        for role, want in zip(block.param_roles, net.param_diffs().get("L", [])):
            param = getattr(block, role)
            if param.grad_req == "null":
                continue
            assert np.abs(want).max() > 0, "reference gradient of %s is zero: the check proves nothing" % role
            assert_close(param.grad().asnumpy().reshape(want.shape), want * grad_scale, tol, "gradient of %s" % role)
    return block, outs, ref
