"""The single-layer bridge (LayerRunner) against a whole CaffeNet running the same layer."""

import numpy as np
import pytest

import gluon_caffe as gc
from tests.conftest import assert_close, one_layer_net

# (id, layer body, bottom shapes, number of tops)
CASES = [
    ("innerproduct", 'type: "InnerProduct" inner_product_param { num_output: 7 '
     'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "uniform" min: -1 max: 1 } }',
     [(4, 3, 2, 5)], 1),
    ("innerproduct_axis2_transpose", 'type: "InnerProduct" inner_product_param { num_output: 6 axis: 2 '
     'transpose: true weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.3 } }',
     [(2, 3, 4, 5)], 1),
    ("convolution", 'type: "Convolution" convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 2 '
     'group: 2 weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "uniform" min: -1 max: 1 } }',
     [(2, 4, 9, 8)], 1),
    ("convolution_hw_dilation", 'type: "Convolution" convolution_param { num_output: 3 kernel_h: 3 kernel_w: 2 '
     'pad_h: 2 pad_w: 0 stride_h: 1 stride_w: 2 dilation: 2 weight_filler { type: "msra" } }',
     [(2, 2, 10, 9)], 1),
    ("pooling_max_ceil", 'type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 }', [(2, 3, 8, 7)], 1),
    ("pooling_ave_pad", 'type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }',
     [(2, 3, 7, 7)], 1),
    ("pooling_global", 'type: "Pooling" pooling_param { pool: AVE global_pooling: true }', [(2, 3, 5, 4)], 1),
    ("relu", 'type: "ReLU"', [(3, 4, 5)], 1),
    ("relu_leaky", 'type: "ReLU" relu_param { negative_slope: 0.1 }', [(3, 4, 5)], 1),
    ("softmax", 'type: "Softmax"', [(3, 5, 2, 2)], 1),
    ("softmax_axis", 'type: "Softmax" softmax_param { axis: 2 }', [(3, 5, 4)], 1),
]

TOL = {"float32": 1e-6, "float64": 1e-12}


def _run_pair(body, shapes, num_tops, phase, dtype, rng, seed=7):
    net = gc.CaffeNet(one_layer_net(body, shapes, num_tops), phase=phase, dtype=dtype)
    layer = gc.LayerRunner('layer { name: "L" %s }' % body, dtype=dtype, phase=phase)
    assert layer.setup(shapes, num_tops) == [net.blob("y%d" % i).shape for i in range(num_tops)]
    # Same weights in both: the runner's filled ones copied into the net.
    for dst, src in zip(net.params.get("L", []), layer.params):
        dst[...] = src
    xs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    gc.set_random_seed(seed)
    ref = net.forward(**{"x%d" % i: x for i, x in enumerate(xs)})
    gc.set_random_seed(seed)
    tops = layer.forward(*xs)
    return net, layer, xs, ref, tops


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_forward_backward_match_caffenet(case, dtype, rng):
    _, body, shapes, num_tops = case
    net, layer, xs, ref, tops = _run_pair(body, shapes, num_tops, "test", dtype, rng)
    for i, top in enumerate(tops):
        assert top.dtype == np.dtype(dtype)
        assert_close(top, ref["y%d" % i], TOL[dtype], "forward top %d" % i)
    dys = [rng.standard_normal(t.shape).astype(dtype) for t in tops]
    ref_diffs = net.backward(**{"y%d" % i: d for i, d in enumerate(dys)})
    diffs = layer.backward(xs, tops, dys)
    for i, d in enumerate(diffs):
        assert_close(d, ref_diffs["x%d" % i], TOL[dtype], "bottom diff %d" % i)
    for i, (got, want) in enumerate(zip(layer.param_diffs, net.param_diffs().get("L", []))):
        assert np.abs(want).max() > 0, "reference param diff %d is all zero: the test would prove nothing" % i
        assert_close(got, want, TOL[dtype], "param diff %d" % i)


def test_param_diffs_accumulate_like_caffe(rng):
    layer = gc.LayerRunner('layer { type: "InnerProduct" inner_product_param { num_output: 3 '
                           'weight_filler { type: "gaussian" std: 1 } } }')
    layer.setup([(2, 4)])
    x = rng.standard_normal((2, 4)).astype("f4")
    y, = layer.forward(x)
    dy = np.ones_like(y)
    layer.backward([x], [y], [dy])
    once = [d.copy() for d in layer.param_diffs]
    layer.backward([x], [y], [dy], accumulate=True)
    for a, b in zip(layer.param_diffs, once):
        assert_close(a, 2 * b, 1e-6, "accumulated param diff")
    layer.backward([x], [y], [dy])
    for a, b in zip(layer.param_diffs, once):
        assert_close(a, b, 1e-6, "param diff after reset")


@pytest.mark.parametrize("phase", ["train", "test"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batchnorm_both_phases(phase, dtype, rng):
    body = 'type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.9 eps: 1e-4 }'
    shapes = [(4, 3, 5, 2)]
    net = gc.CaffeNet(one_layer_net(body, shapes), phase=phase, dtype=dtype)
    layer = gc.LayerRunner('layer { name: "L" %s }' % body, dtype=dtype, phase=phase)
    layer.setup(shapes)
    stats = [rng.uniform(0.5, 2.0, p.shape).astype(dtype) for p in layer.params]
    stats[2][...] = 1.7  # the moving-average scale factor
    for dst, src, value in zip(net.params["L"], layer.params, stats):
        dst[...] = value
        src[...] = value
    x = rng.standard_normal(shapes[0]).astype(dtype) * 3 + 1
    ref = net.forward(x0=x)
    y, = layer.forward(x)
    assert_close(y, ref["y0"], TOL[dtype], "BatchNorm %s forward" % phase)
    # TRAIN updates the running statistics exactly as the Net does; TEST leaves them alone.
    for i, (got, want) in enumerate(zip(layer.params, net.params["L"])):
        assert_close(got, want, TOL[dtype], "BatchNorm %s stat %d" % (phase, i))
        changed = not np.array_equal(got, stats[i])
        assert changed == (phase == "train"), "stat %d changed=%s in %s" % (i, changed, phase)
    dy = rng.standard_normal(y.shape).astype(dtype)
    ref_diffs = net.backward(y0=dy)
    dx, = layer.backward([x], [y], [dy])
    assert_close(dx, ref_diffs["x0"], TOL[dtype] * 10, "BatchNorm %s backward" % phase)


@pytest.mark.parametrize("phase", ["train", "test"])
def test_dropout_both_phases(phase, rng):
    body = 'type: "Dropout" dropout_param { dropout_ratio: 0.4 }'
    shapes = [(8, 50)]
    net, layer, xs, ref, tops = _run_pair(body, shapes, 1, phase, "float32", rng)
    assert_close(tops[0], ref["y0"], 1e-6, "Dropout %s forward" % phase)
    dropped = np.mean(tops[0] == 0)
    if phase == "test":
        np.testing.assert_array_equal(tops[0], xs[0])
    else:
        assert 0.3 < dropped < 0.5, dropped
        kept = tops[0] != 0
        assert_close(tops[0][kept], xs[0][kept] / 0.6, 1e-6, "Dropout scale")
    dy = rng.standard_normal(tops[0].shape).astype("f4")
    ref_diffs = net.backward(y0=dy)
    dx, = layer.backward(xs, tops, [dy])
    assert_close(dx, ref_diffs["x0"], 1e-6, "Dropout %s backward" % phase)


def test_phase_switch_after_setup(rng):
    layer = gc.LayerRunner('layer { type: "Dropout" dropout_param { dropout_ratio: 0.5 } }', phase="test")
    layer.setup([(10, 100)])
    x = rng.standard_normal((10, 100)).astype("f4")
    np.testing.assert_array_equal(layer.forward(x)[0], x)
    layer.phase = "train"
    assert layer.phase == "train"
    assert 0.35 < np.mean(layer.forward(x)[0] == 0) < 0.65
    layer.phase = "test"
    np.testing.assert_array_equal(layer.forward(x)[0], x)


def test_shape_change_reshapes(rng):
    layer = gc.LayerRunner('layer { type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 '
                           'weight_filler { type: "gaussian" std: 1 } } }')
    assert layer.setup([(1, 3, 8, 8)]) == [(1, 2, 6, 6)]
    y, = layer.forward(rng.standard_normal((2, 3, 10, 9)).astype("f4"))
    assert y.shape == (2, 2, 8, 7)


def test_sharing_layers_copy_out(rng):
    # Flatten shares its top with its bottom inside Caffe: outputs must still be right.
    layer = gc.LayerRunner('layer { type: "Flatten" }')
    layer.setup([(2, 3, 4)])
    x = rng.standard_normal((2, 3, 4)).astype("f4")
    y, = layer.forward(x)
    np.testing.assert_array_equal(y, x.reshape(2, 12))
    dy = rng.standard_normal((2, 12)).astype("f4")
    dx, = layer.backward([x], [y], [dy])
    np.testing.assert_array_equal(dx, dy.reshape(2, 3, 4))


def test_bare_field_form_and_v1(rng):
    bare = gc.LayerRunner('type: "InnerProduct" inner_product_param { num_output: 2 }')
    v1 = gc.LayerRunner('layers { type: INNER_PRODUCT inner_product_param { num_output: 2 } }')
    assert bare.type == v1.type == "InnerProduct"
    assert bare.setup([(3, 4)]) == v1.setup([(3, 4)]) == [(3, 2)]
