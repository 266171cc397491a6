"""gluon_caffe.verify: converted nets against real Caffe, blob by blob."""

import os
import sys

import numpy as np
import pytest

import gluon_caffe as gc
from gluon_caffe.verify import VerifyReport, verify

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures  # noqa: E402

SMALL = """name: "small"
layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "split" type: "Slice" bottom: "pool1" top: "left" top: "right" slice_param { axis: 1 slice_point: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "right" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


def _save_random(prototxt, path, seed):
    """A caffemodel for ``prototxt`` with seeded random weights, written by real Caffe."""
    net = gc.CaffeNet(prototxt)
    rng = np.random.RandomState(seed)
    for layer, params in net.params.items():
        for i, p in enumerate(params):
            if net.layer_type(layer) == "BatchNorm":
                p[...] = rng.uniform(0.5, 2.0, p.shape) if i else rng.randn(*p.shape)
            else:
                p[...] = rng.randn(*p.shape) / np.sqrt(max(int(np.prod(p.shape[1:])), 1))
    net.save(path)
    return path


@pytest.fixture
def small(tmp_path):
    proto = tmp_path / "small.prototxt"
    proto.write_text(SMALL)
    return str(proto), _save_random(str(proto), str(tmp_path / "small.caffemodel"), 0)


def test_small_net_every_blob_ok(small):
    proto, model = small
    report = verify(proto, model)
    assert isinstance(report, VerifyReport)
    assert report.ok, str(report)
    caffe_blobs = gc.CaffeNet(proto).blob_names
    assert [r.blob for r in report.rows] == list(caffe_blobs)
    assert all(r.ok and r.rel_diff <= 1e-4 for r in report.rows)
    assert report.worst == max(r.rel_diff for r in report.rows) < 1e-4
    shapes = {r.blob: r.shape for r in report.rows}
    assert shapes["conv1"] == (2, 6, 12, 12) and shapes["left"] == (2, 2, 6, 6) and shapes["prob"] == (2, 5)
    table = report.table().splitlines()
    assert table[0].split()[:2] == ["blob", "shape"] and len(table) == 2 + len(report.rows)
    assert len(set(len(l) for l in table[:2])) == 1
    assert "OK" in str(report).splitlines()[-1]


def test_given_inputs_and_options(small):
    proto, model = small
    x = np.random.RandomState(5).uniform(0, 255, (3, 3, 12, 12)).astype(np.float32)
    report = verify(proto, model, {"data": x}, mean=[100.0, 110.0, 120.0])
    assert report.ok, str(report)
    assert {r.shape for r in report.rows if r.blob == "prob"} == {(3, 5)}
    np.testing.assert_allclose(report.inputs["data"], x - np.array([100, 110, 120], np.float32)[None, :, None, None])
    rgb = verify(proto, model, {"data": x}, rgb=True)
    assert rgb.ok and sorted(r.blob for r in rgb.rows) == ["left", "prob"], str(rgb)
    fused = verify(proto, model, fuse=True)
    assert fused.ok, str(fused)


def test_seeded_random_inputs_are_reproducible(small):
    proto, model = small
    a, b = verify(proto, model, seed=3), verify(proto, model, seed=3)
    np.testing.assert_array_equal(a.inputs["data"], b.inputs["data"])
    assert a.inputs["data"].shape == (2, 3, 12, 12)
    assert not np.array_equal(a.inputs["data"], verify(proto, model, seed=4).inputs["data"])


def test_wrong_weights_are_caught(small, tmp_path):
    proto, model = small
    other = _save_random(proto, str(tmp_path / "other.caffemodel"), 1)
    report = verify(proto, model, reference=other)
    assert not report.ok
    bad = {r.blob for r in report.rows if not r.ok}
    assert "conv1" in bad and "prob" in bad and "data" not in bad
    assert report.worst > 1e-2 and "FAIL" in report.summary()
    # A loaded CaffeNet with one tampered weight: only the blobs after it differ.
    net = gc.CaffeNet(proto, model)
    net.params["ip"][0][0, 0] += 1.0
    report = verify(proto, model, reference=net)
    assert {r.blob for r in report.rows if not r.ok} == {"ip", "prob"}, str(report)


def test_unknown_input_raises(small):
    proto, model = small
    with pytest.raises(gc.CaffeShapeError, match="not an input"):
        verify(proto, model, {"image": np.zeros((1, 3, 12, 12), np.float32)})


def test_mtcnn_onet_every_blob_matches_caffe():
    archive = fixtures.fetch("big-fiubrother-detection")
    proto = fixtures.extract(archive, "model/onet.prototxt")
    model = fixtures.extract(archive, "model/onet.caffemodel")
    x = np.random.RandomState(2).uniform(-1, 1, (8, 3, 48, 48)).astype(np.float32)
    report = gc.verify(proto, model, {"data": x})
    assert report.ok, str(report)
    names = [r.blob for r in report.rows]
    assert names == list(gc.CaffeNet(proto).blob_names)
    assert {"conv1", "conv5", "prob1", "conv6-2", "conv6-3"} <= set(names)
    assert report.worst < 1e-5
