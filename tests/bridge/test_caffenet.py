"""CaffeNet, the reference runner: weights in and out, V1 upgrade, phases, threads."""

import threading

import numpy as np
import pytest

import gluon_caffe as gc
from tests.conftest import assert_close

NET = '''name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.5 }
                            bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc"
        inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" include { phase: TRAIN } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
'''

V1_NET = '''name: "tiny"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 8 input_dim: 8
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
         convolution_param { num_output: 4 kernel_size: 3 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "fc" type: INNER_PRODUCT bottom: "conv1" top: "fc" inner_product_param { num_output: 5 } }
layers { name: "prob" type: SOFTMAX bottom: "fc" top: "prob" }
'''


def test_structure_and_forward(rng):
    net = gc.CaffeNet(NET)
    assert net.inputs == ["data"]
    assert net.outputs == ["prob"]
    assert net.layer_names == ["data", "conv1", "relu1", "fc", "prob"]  # TRAIN-only Dropout filtered out
    assert [p.shape for p in net.params["conv1"]] == [(4, 3, 3, 3), (4,)]
    x = rng.standard_normal((2, 3, 8, 8)).astype("f4")
    blobs = net.forward(data=x)
    assert set(blobs) == {"data", "conv1", "fc", "prob"}
    w, b = net.params["fc"]
    conv = blobs["conv1"]
    assert (conv >= 0).all()
    fc = conv.reshape(2, -1) @ w.T + b
    assert_close(blobs["fc"], fc, 1e-5, "fc")
    e = np.exp(fc - fc.max(1, keepdims=True))
    assert_close(blobs["prob"], e / e.sum(1, keepdims=True), 1e-5, "softmax")


def test_reshapes_to_inputs(rng):
    net = gc.CaffeNet(NET.replace('type: "InnerProduct"', 'type: "Pooling" pooling_param { pool: MAX global_pooling: true } ')
                      .replace("inner_product_param { num_output: 5 weight_filler { type: \"xavier\" } }", ""))
    out = net.forward(data=rng.standard_normal((5, 3, 12, 10)).astype("f4"))
    assert out["prob"].shape == (5, 4, 1, 1)


def test_train_phase_includes_train_layers():
    assert "drop" in gc.CaffeNet(NET, phase="train").layer_names


def test_save_and_load_roundtrip(tmp_path, rng):
    a = gc.CaffeNet(NET)
    path = tmp_path / "w.caffemodel"
    a.save(path)
    b = gc.CaffeNet(NET, caffemodel=path)
    for layer in a.params:
        for pa, pb in zip(a.params[layer], b.params[layer]):
            np.testing.assert_array_equal(pa, pb)
    x = rng.standard_normal((2, 3, 8, 8)).astype("f4")
    np.testing.assert_array_equal(a.forward(data=x)["prob"], b.forward(data=x)["prob"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.caffemodel"]  # no temporary file left


def test_v1_prototxt_upgraded_and_weights_by_name(tmp_path, rng):
    v2 = gc.CaffeNet(NET)
    path = tmp_path / "w.caffemodel"
    v2.save(path)
    v1 = gc.CaffeNet(V1_NET, caffemodel=path)
    assert v1.layer_type("conv1") == "Convolution"
    x = rng.standard_normal((2, 3, 8, 8)).astype("f4")
    np.testing.assert_array_equal(v1.forward(data=x)["prob"], v2.forward(data=x)["prob"])


def test_prototxt_from_file(tmp_path):
    path = tmp_path / "deploy.prototxt"
    path.write_text(NET)
    assert gc.CaffeNet(str(path)).name == "tiny"
    assert gc.CaffeNet(path).name == "tiny"


def test_float64_net(rng):
    net = gc.CaffeNet(NET, dtype="float64")
    out = net.forward(data=rng.standard_normal((2, 3, 8, 8)))
    assert out["prob"].dtype == np.float64
    assert_close(out["prob"].sum(1), np.ones(2), 1e-12, "softmax sums")


def test_two_threads_two_layers(rng):
    # Caffe's mode is thread-local and MXNet calls from engine threads: both must compute right.
    layers, inputs, expected = [], [], []
    for k in range(2):
        layer = gc.LayerRunner('layer { type: "InnerProduct" inner_product_param { num_output: 64 '
                               'weight_filler { type: "gaussian" std: 1 } } }')
        layer.setup([(32, 128)])
        x = rng.standard_normal((32, 128)).astype("f4")
        w, b = layer.params
        layers.append(layer)
        inputs.append(x)
        expected.append(x @ w.T + b)
    errors = []

    def work(k):
        try:
            for _ in range(200):
                y, = layers[k].forward(inputs[k])
                assert_close(y, expected[k], 1e-5, "thread %d" % k)
        except Exception as e:  # reported below, in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_caffe_info():
    info = gc.caffe_info()
    assert len(info["patch_id"]) == 12
    assert info["flags"] == {"CPU_ONLY": True, "USE_OPENCV": True, "USE_LMDB": True, "USE_LEVELDB": True}
    assert info["version"] == "1.0.0" and info["commit"] == "99bd997"
    assert info["protobuf"].startswith("3.21")
    assert info["glog"].startswith("0.6")
    assert info["layer_types"] >= 50
    assert "0002-recoverable-check-failures.patch" in info["patches"]


def test_log_level_switch():
    assert gc.get_log_level() is None
    gc.set_log_level("INFO")
    try:
        assert gc.get_log_level() == "INFO"
    finally:
        gc.set_log_level(None)
    assert gc.get_log_level() is None
    with pytest.raises(ValueError):
        gc.set_log_level("LOUD")


LOSS_NET = '''force_backward: true
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 4 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" }
'''


def test_loss_net_backward_seeds_its_own_gradient(rng):
    net = gc.CaffeNet(LOSS_NET)
    x = rng.standard_normal((4, 3)).astype("f4")
    y = np.array([0, 2, 1, 2], "f4")
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss = net.forward(x=x, y=y)["loss"]
    assert_close(loss, -np.log(p[np.arange(4), y.astype(int)]).mean(), 1e-6, "loss")
    for _ in range(2):  # twice: a second backward must not lose the loss weight
        dx = net.backward()["x"]
        onehot = np.eye(3)[y.astype(int)]
        assert_close(dx, (p - onehot) / 4, 1e-6, "dloss/dx")


def test_layer_runner_backward_through_a_loss_layer(rng):
    layer = gc.LayerRunner('layer { type: "SoftmaxWithLoss" }')
    layer.setup([(4, 3), (4,)])
    x = rng.standard_normal((4, 3)).astype("f4")
    y = np.array([1, 0, 2, 2], "f4")
    loss, = layer.forward(x, y)
    assert loss.shape == ()
    dx, dy = layer.backward([x, y], [loss], [np.ones((), "f4")], propagate_down=[True, False])
    assert dy is None
    ref = gc.CaffeNet(LOSS_NET)
    ref.forward(x=x, y=y)
    assert_close(dx, ref.backward()["x"], 1e-6, "runner vs net")
