"""SSD translators (weiliu89/caffe ssd branch): Permute, Normalize, PriorBox, DetectionOutput.

BVLC Caffe has none of these layers; their reference semantics are the SSD branch's and
OpenCV DNN's (which runs SSD Caffe models), and the tests compare with OpenCV DNN.
Every translation is built from stock MXNet operators, so the converted graph hybridizes,
exports to ``-symbol.json`` and loads back without gluon_caffe.
"""

import math

import mxnet as mx
import numpy as np

from ..proto import caffe_pb2
from ..registry import Translation, register

__all__ = ["translate_permute", "translate_normalize", "translate_prior_box",
           "translate_detection_output", "prior_box_sizes"]


@register("Permute")
def translate_permute(layer, inputs, ctx):
    """Permute: the listed axes first, then the unlisted ones in increasing order (Caffe's rule)."""
    order = list(layer.permute_param.order)
    shape = ctx.shape(inputs[0])
    ndim = len(shape) if shape is not None else max(order + [3]) + 1
    if len(set(order)) != len(order) or any(o >= ndim for o in order):
        raise ctx.error(layer, "permute_param.order %s is not a permutation of %d axes", order, ndim)
    axes = order + [a for a in range(ndim) if a not in order]
    return Translation([mx.sym.transpose(inputs[0], axes=tuple(axes), name=ctx.op_name(layer))], {}, {})


@register("Normalize")
def translate_normalize(layer, inputs, ctx):
    """Normalize: ``x / sqrt(sum(x^2) + eps) * scale``.

    The sum runs over the channels at each position (``across_spatial: false``)
    or over all of C, H, W of a sample (``across_spatial: true``, the default);
    ``eps`` is added inside the square root, as the SSD branch and OpenCV do.
    The scale blob holds one value (``channel_shared``, the default) or one per
    channel.
    """
    p = layer.norm_param
    x = inputs[0]
    shape = ctx.shape(x)
    channels = shape[1] if shape is not None else None
    # L2Normalization's eps is added to the sum of squares before the square root: the same place.
    mode = "instance" if p.across_spatial else "channel"
    normed = mx.sym.L2Normalization(x, mode=mode, eps=float(np.float32(p.eps)),
                                    name=ctx.op_name(layer, "l2"))
    blobs = ctx.blobs(layer, 1, ("scale",))
    name = "%s_scale" % layer.name
    if p.channel_shared:
        pshape = (1,)
        what = ("scale", "channel_shared: true (one value)")
    else:
        pshape = (channels,)
        what = ("scale", "channel_shared: false (one value per input channel)")
    args = {}
    if blobs is not None:
        scale = ctx.check_blob(layer, 0, blobs[0], pshape, what)
        pshape = tuple(scale.shape)
        args[name] = ctx.f32(scale)
    elif pshape == (None,):
        pshape = None
    scale = ctx.var(name, pshape)
    if p.channel_shared:
        out = mx.sym.broadcast_mul(normed, mx.sym.reshape(scale, shape=(1, 1, 1, 1)), name=ctx.op_name(layer))
    else:
        out = mx.sym.broadcast_mul(normed, mx.sym.reshape(scale, shape=(1, -1, 1, 1)), name=ctx.op_name(layer))
    return Translation([out], args, {})


def prior_box_sizes(p):
    """Widths and heights (float32) of the priors at one position, in Caffe's order.

    For each ``min_size``: the square of that size, the square of
    ``sqrt(min_size * max_size)`` when max sizes are given, then one box per
    aspect ratio (1 and duplicates skipped, ``1/ar`` added after ``ar`` with
    ``flip``).
    """
    ratios = []
    for ar in p.aspect_ratio:
        ar = float(np.float32(ar))
        if abs(ar - 1.0) < 1e-6 or any(abs(ar - r) < 1e-6 for r in ratios):
            continue
        ratios.append(ar)
        if p.flip:
            ratios.append(float(np.float32(1.0) / np.float32(ar)))
    widths, heights = [], []
    f32 = np.float32
    for s, min_size in enumerate(p.min_size):
        m = f32(min_size)
        widths.append(m)
        heights.append(m)
        if len(p.max_size):
            side = f32(math.sqrt(f32(m * f32(p.max_size[s]))))
            widths.append(side)
            heights.append(side)
        for ar in ratios:
            r = f32(math.sqrt(f32(ar)))
            widths.append(f32(m * r))
            heights.append(f32(m / r))
    return np.array(widths, np.float32), np.array(heights, np.float32)


def _dim(sym, axis, name):
    """Size of ``sym``'s axis as a float32 (1, 1, 1) symbol, read at run time from its shape."""
    size = mx.sym.slice_axis(mx.sym.shape_array(sym), axis=0, begin=axis, end=axis + 1)
    return mx.sym.reshape(mx.sym.cast(size, dtype="float32"), shape=(1, 1, 1), name=name)


@register("PriorBox")
def translate_prior_box(layer, inputs, ctx):
    """PriorBox: normalised prior boxes and their variances, shape ``(1, 2, H * W * K * 4)``.

    Built from the feature map's and the image's shapes at run time (not baked in
    as a constant), so the converted net follows the input size as Caffe and
    OpenCV do; an inference-only graph (``import_model(inference=True)``) takes
    them as a constant computed once, by the same operators, for the
    convert-time shapes (and its block refuses other sizes). Centres are ``(w + offset) * step`` with ``step`` from the
    prototxt or ``image size / feature size``; corners are divided by the image
    size (``img_size``/``img_h``/``img_w`` or bottom 1's shape) and clipped to
    [0, 1] with ``clip: true``. Defaults are caffe.proto's (``clip: false``,
    ``flip: true``, ``offset: 0.5``, variance 0.1); OpenCV DNN instead clips
    when the prototxt leaves ``clip`` out. Several ``min_size`` values are laid
    out as in the SSD branch (OpenCV reads only the first), ``min_size`` and
    ``max_size`` as floats (as OpenCV; the SSD branch truncates them to int).
    """
    p = layer.prior_box_param
    if not len(p.min_size):
        raise ctx.error(layer, "prior_box_param.min_size is required")
    if any(s <= 0 for s in p.min_size):
        raise ctx.error(layer, "prior_box_param.min_size must be positive, got %s", list(p.min_size))
    if len(p.max_size) and len(p.max_size) != len(p.min_size):
        raise ctx.error(layer, "prior_box_param has %d max_size values for %d min_size values",
                        len(p.max_size), len(p.min_size))
    for lo, hi in zip(p.min_size, p.max_size):
        if hi <= lo:
            raise ctx.error(layer, "prior_box_param.max_size %g must exceed min_size %g", hi, lo)
    variance = [float(v) for v in p.variance]
    if len(variance) not in (0, 1, 4):
        raise ctx.error(layer, "prior_box_param.variance must have 1 or 4 values, got %d", len(variance))
    if any(v <= 0 for v in variance):
        raise ctx.error(layer, "prior_box_param.variance must be positive, got %s", variance)
    if not variance:
        variance = [0.1]
    if len(variance) == 1:
        variance = variance * 4
    if p.HasField("img_size") and (p.HasField("img_h") or p.HasField("img_w")):
        raise ctx.error(layer, "prior_box_param: give img_size or img_h/img_w, not both")
    if p.HasField("step") and (p.HasField("step_h") or p.HasField("step_w")):
        raise ctx.error(layer, "prior_box_param: give step or step_h/step_w, not both")
    if len(inputs) < 2 and not (p.HasField("img_size") or p.HasField("img_h")):
        raise ctx.error(layer, "PriorBox needs the image as bottom 1 (or img_size/img_h/img_w)")
    n = lambda s: ctx.op_name(layer, s)  # noqa: E731
    if p.HasField("img_h") or p.HasField("img_w"):
        if p.img_h <= 0 or p.img_w <= 0:
            raise ctx.error(layer, "prior_box_param img_h and img_w must both be positive")
    if p.HasField("step_h") or p.HasField("step_w"):
        if p.step_h <= 0 or p.step_w <= 0:
            raise ctx.error(layer, "prior_box_param step_h and step_w must both be positive")
    elif p.HasField("step") and p.step <= 0:
        raise ctx.error(layer, "prior_box_param.step must be positive, got %g", p.step)

    widths, heights = prior_box_sizes(p)
    half_w = (widths * np.float32(0.5)).astype(np.float32)
    half_h = (heights * np.float32(0.5)).astype(np.float32)
    k = len(widths)
    hw_name, hh_name = "%s_half_width" % layer.name, "%s_half_height" % layer.name
    var_name = "%s_variance" % layer.name
    args = {hw_name: half_w.reshape(1, 1, k), hh_name: half_h.reshape(1, 1, k),
            var_name: np.array(variance, np.float32).reshape(1, 1, 1, 4)}

    def scaled(sym, factor):
        return sym * factor if isinstance(factor, float) else mx.sym.broadcast_mul(sym, factor)

    def divided(sym, by):
        return sym / by if isinstance(by, float) else mx.sym.broadcast_div(sym, by)

    def build(x, img, hw, hh, var, name):
        """The priors of feature map ``x`` for image ``img`` (both used only through their shapes)."""
        # Image size: fixed by the prototxt, else the second bottom's H and W.
        if p.HasField("img_h") or p.HasField("img_w"):
            img_h, img_w = float(p.img_h), float(p.img_w)
        elif p.HasField("img_size"):
            img_h = img_w = float(p.img_size)
        else:
            img_h, img_w = _dim(img, 2, n("img_h")), _dim(img, 3, n("img_w"))
        # Step: fixed, else image size / feature-map size (computed in float32 as OpenCV does).
        if p.HasField("step_h") or p.HasField("step_w"):
            step_h, step_w = float(p.step_h), float(p.step_w)
        elif p.HasField("step"):
            step_h = step_w = float(p.step)
        else:
            fh, fw = _dim(x, 2, n("layer_h")), _dim(x, 3, n("layer_w"))
            step_h = (img_h / fh) if isinstance(img_h, float) else mx.sym.broadcast_div(img_h, fh)
            step_w = (img_w / fw) if isinstance(img_w, float) else mx.sym.broadcast_div(img_w, fw)
        offset = float(p.offset)
        # Centres along the feature map's columns (1, W, 1) and rows (H, 1, 1).
        cx = scaled(mx.sym.reshape(mx.sym.contrib.arange_like(x, axis=3) + offset, shape=(1, -1, 1)), step_w)
        cy = scaled(mx.sym.reshape(mx.sym.contrib.arange_like(x, axis=2) + offset, shape=(-1, 1, 1)), step_h)
        x1 = divided(mx.sym.broadcast_sub(cx, hw), img_w)            # (1, W, K)
        x2 = divided(mx.sym.broadcast_add(cx, hw), img_w)
        y1 = divided(mx.sym.broadcast_sub(cy, hh), img_h)            # (H, 1, K)
        y2 = divided(mx.sym.broadcast_add(cy, hh), img_h)
        # Adding zeros of the other factor's shape broadcasts both to (H, W, K) without changing a value.
        zx, zy = mx.sym.zeros_like(x1), mx.sym.zeros_like(y1)
        corners = [mx.sym.broadcast_add(x1, zy), mx.sym.broadcast_add(y1, zx),
                   mx.sym.broadcast_add(x2, zy), mx.sym.broadcast_add(y2, zx)]
        boxes = mx.sym.stack(*corners, axis=3, name=n("boxes"))     # (H, W, K, 4)
        if p.clip:
            boxes = mx.sym.clip(boxes, 0.0, 1.0)
        variances = mx.sym.broadcast_add(mx.sym.zeros_like(boxes), var)
        return mx.sym.concat(mx.sym.reshape(boxes, shape=(1, 1, -1)), mx.sym.reshape(variances, shape=(1, 1, -1)),
                             dim=1, name=name)

    img = inputs[1] if len(inputs) > 1 else None
    if ctx.inference:
        # An inference graph takes the priors as a constant: they depend only on shapes, and the
        # ~30 small operators that compute them cost more than the convolutions on small nets.
        priors = _constant_priors(ctx, layer, inputs[0], img, build, args)
        if priors is not None:
            name = "%s_priors" % layer.name
            ctx.fixed_input_size.append(layer.name)
            return Translation([ctx.var(name, value=priors)], {name: priors}, {})
    hw, hh = ctx.var(hw_name, value=args[hw_name]), ctx.var(hh_name, value=args[hh_name])
    var = ctx.var(var_name, value=args[var_name])
    return Translation([build(inputs[0], img, hw, hh, var, ctx.op_name(layer))], args, {})


def _constant_priors(ctx, layer, x, img, build, args):
    """The priors computed once by the same operators as the graph's, or None when a shape is unknown."""
    x_shape = ctx.shape(x)
    img_shape = ctx.shape(img) if img is not None else (1, 1, 1, 1)
    if x_shape is None or img_shape is None or len(x_shape) != 4 or len(img_shape) != 4:
        return None
    names = ("__priorbox_x", "__priorbox_img", "__priorbox_hw", "__priorbox_hh", "__priorbox_var")
    sym = build(*[mx.sym.var(v) for v in names], name="__priorbox")
    # args holds the half widths, half heights and variances, in build's order.
    values = dict(zip(names, (np.zeros(x_shape, np.float32), np.zeros(img_shape, np.float32))
                      + tuple(args.values())))
    feed = {k: mx.nd.array(v, dtype=np.float32) for k, v in values.items() if k in sym.list_arguments()}
    return np.ascontiguousarray(sym.eval(ctx=mx.cpu(), **feed)[0].asnumpy(), dtype=np.float32)


_CODE = caffe_pb2.PriorBoxParameter


def _decode(loc, prior_box, prior_var, code_type, var_in_target):
    """Boxes (..., 4) decoded from ``loc`` against priors (OpenCV's DecodeBBox, normalised boxes)."""
    def part(s, i):
        return mx.sym.slice_axis(s, axis=-1, begin=i, end=i + 1)

    if not var_in_target:
        loc = mx.sym.broadcast_mul(loc, prior_var)
    px1, py1, px2, py2 = (part(prior_box, i) for i in range(4))
    l0, l1, l2, l3 = (part(loc, i) for i in range(4))
    if code_type == _CODE.CORNER:
        return mx.sym.broadcast_add(loc, prior_box)
    pw, ph = px2 - px1, py2 - py1
    if code_type == _CODE.CORNER_SIZE:
        return mx.sym.concat(mx.sym.broadcast_add(px1, mx.sym.broadcast_mul(l0, pw)),
                             mx.sym.broadcast_add(py1, mx.sym.broadcast_mul(l1, ph)),
                             mx.sym.broadcast_add(px2, mx.sym.broadcast_mul(l2, pw)),
                             mx.sym.broadcast_add(py2, mx.sym.broadcast_mul(l3, ph)), dim=-1)
    # CENTER_SIZE, in OpenCV's order of float operations.
    pcx, pcy = px1 + pw * 0.5, py1 + ph * 0.5
    cx = mx.sym.broadcast_add(mx.sym.broadcast_mul(l0, pw), pcx)
    cy = mx.sym.broadcast_add(mx.sym.broadcast_mul(l1, ph), pcy)
    half_w = mx.sym.broadcast_mul(mx.sym.exp(l2), pw) * 0.5
    half_h = mx.sym.broadcast_mul(mx.sym.exp(l3), ph) * 0.5
    return mx.sym.concat(cx - half_w, cy - half_h, cx + half_w, cy + half_h, dim=-1)


@register("DetectionOutput")
def translate_detection_output(layer, inputs, ctx):
    """DetectionOutput: decode, per-class top-k + threshold + NMS, keep the best ``keep_top_k``.

    Bottoms: location predictions ``(N, P * L * 4)``, confidences already
    soft-maxed ``(N, P * C)`` and the PriorBox output ``(1, 2, P * 4)``.
    Output ``(1, 1, N * K, 7)`` with rows ``[image_id, label, score, xmin, ymin,
    xmax, ymax]`` laid out as OpenCV DNN does: each image's detections sorted by
    score (descending), the images one after the other, then rows of zeros up to
    ``K = keep_top_k`` per image (Caffe's SSD branch instead returns exactly the
    kept rows, grouped by label: the rows with a score > 0 are those).

    Per class (the background one skipped), scores ``> confidence_threshold``
    among the ``top_k`` best enter greedy NMS with IoU ``> nms_threshold``
    suppressing; then the ``keep_top_k`` best over all classes are kept.
    Without ``confidence_threshold`` scores must be > 0 (OpenCV's default; the
    SSD branch then keeps every score). ``eta`` other than 1 (adaptive NMS) is
    not supported: it raises a ConversionError.
    """
    p = layer.detection_output_param
    if len(inputs) < 3:
        raise ctx.error(layer, "DetectionOutput needs 3 bottoms (loc, conf, prior), got %d", len(inputs))
    if not p.HasField("num_classes") or p.num_classes < 1:
        raise ctx.error(layer, "detection_output_param.num_classes is required")
    num_classes = int(p.num_classes)
    nms = p.nms_param
    if nms.eta != 1.0:
        raise ctx.error(layer, "nms_param.eta %g (adaptive NMS) is not supported; only 1", nms.eta)
    if not nms.nms_threshold > 0:
        raise ctx.error(layer, "nms_param.nms_threshold must be positive, got %g", nms.nms_threshold)
    if p.code_type not in (_CODE.CORNER, _CODE.CENTER_SIZE, _CODE.CORNER_SIZE):
        raise ctx.error(layer, "detection_output_param.code_type %d is unknown", p.code_type)
    loc, conf, prior = inputs[:3]
    prior_shape = ctx.shape(prior, layer)
    conf_shape = ctx.shape(conf, layer)
    loc_shape = ctx.shape(loc, layer)
    if len(prior_shape) < 3 or prior_shape[2] % 4:
        raise ctx.error(layer, "bottom 2 (priors) has shape %s, expected (1, 2, num_priors * 4)", prior_shape)
    num_priors = prior_shape[2] // 4
    var_in_target = p.variance_encoded_in_target
    if prior_shape[1] != (1 if var_in_target else 2):
        raise ctx.error(layer, "bottom 2 (priors) has %d channels, expected %d (variance_encoded_in_target: %s)",
                        prior_shape[1], 1 if var_in_target else 2, str(var_in_target).lower())
    num_loc_classes = 1 if p.share_location else num_classes
    batch = loc_shape[0]  # at convert time; the graph itself takes any batch size
    if int(np.prod(loc_shape[1:])) != num_priors * num_loc_classes * 4:
        raise ctx.error(layer, "bottom 0 (loc) has %d values per image, expected %d priors x %d x 4",
                        int(np.prod(loc_shape[1:])), num_priors, num_loc_classes)
    if int(np.prod(conf_shape[1:])) != num_priors * num_classes or conf_shape[0] != batch:
        raise ctx.error(layer, "bottom 1 (conf) has shape %s, expected (%d, %d priors x %d classes)",
                        conf_shape, batch, num_priors, num_classes)
    background = p.background_label_id
    labels = [c for c in range(num_classes) if c != background]
    if not labels:
        raise ctx.error(layer, "no class but the background one (num_classes %d)", num_classes)
    n = lambda s: ctx.op_name(layer, s)  # noqa: E731

    priors = mx.sym.reshape(prior, shape=(0, 0, -1, 4))                  # (1, 1|2, P, 4)
    prior_box = mx.sym.slice_axis(priors, axis=1, begin=0, end=1)        # (1, 1, P, 4)
    prior_var = None if var_in_target else mx.sym.slice_axis(priors, axis=1, begin=1, end=2)
    if p.share_location:
        loc4 = mx.sym.reshape(loc, shape=(0, 1, -1, 4))                  # (N, 1, P, 4)
    else:
        # Caffe lays out loc as (P, class, 4): classes become an axis before the priors.
        loc4 = mx.sym.transpose(mx.sym.reshape(loc, shape=(0, -1, num_loc_classes, 4)), axes=(0, 2, 1, 3))
    boxes = _decode(loc4, prior_box, prior_var, p.code_type, var_in_target)  # (N, 1|C, P, 4)
    scores = mx.sym.transpose(mx.sym.reshape(conf, shape=(0, -1, num_classes)), axes=(0, 2, 1))  # (N, C, P)
    label_ids = np.array(labels, np.float32)
    if len(labels) != num_classes:
        idx_name = "%s_labels" % layer.name
        idx = ctx.var(idx_name, value=label_ids)
        scores = mx.sym.take(scores, idx, axis=1)
        if not p.share_location:
            boxes = mx.sym.take(boxes, idx, axis=1)
    else:
        idx_name = idx = None
    c = len(labels)
    # Keep a score when it beats the threshold and is among its class's top_k (OpenCV: default 0).
    threshold = float(p.confidence_threshold) if p.HasField("confidence_threshold") else 0.0
    top_k = nms.top_k if nms.HasField("top_k") else -1
    if 0 < top_k < num_priors:
        # Only each class's top_k candidates go on: box_nms's cost grows with all the rows it is
        # given (8892 rows with 400 valid: ~60x slower than the 400 alone).
        top = mx.sym.topk(scores, axis=2, k=top_k, ret_typ="indices", name=n("top_k"))   # (N, c, top_k)
        zeros = mx.sym.zeros_like(top)
        image_idx = mx.sym.broadcast_add(mx.sym.reshape(mx.sym.contrib.arange_like(top, axis=0),
                                                        shape=(-1, 1, 1)), zeros)
        class_idx = mx.sym.broadcast_add(mx.sym.reshape(mx.sym.contrib.arange_like(top, axis=1),
                                                        shape=(1, -1, 1)), zeros)
        scores = mx.sym.gather_nd(scores, mx.sym.stack(image_idx, class_idx, top, axis=0))
        box_class = zeros if p.share_location else class_idx
        boxes = mx.sym.gather_nd(boxes, mx.sym.stack(image_idx, box_class, top, axis=0))  # (N, c, top_k, 4)
    # Rejected scores become -1, under box_nms's valid_thresh.
    scores = mx.sym.where(scores > threshold, scores, mx.sym.ones_like(scores) * -1.0)
    class_col = mx.sym.reshape(mx.sym.contrib.arange_like(scores, axis=1), shape=(1, -1, 1, 1))
    class_col = mx.sym.broadcast_add(class_col, mx.sym.zeros_like(mx.sym.expand_dims(scores, axis=3)))
    boxes = mx.sym.broadcast_add(boxes, mx.sym.zeros_like(mx.sym.expand_dims(scores, axis=3)))
    rows = mx.sym.concat(class_col, mx.sym.expand_dims(scores, axis=3), boxes, dim=3)  # (N, c, P, 6)
    rows = mx.sym.reshape(rows, shape=(0, -1, 6))
    # Same-class greedy NMS in descending score order; the kept rows come first, the rest are -1.
    overlap = float(np.float32(nms.nms_threshold))
    if ctx.inference and hasattr(mx.sym, "gluon_caffe_nms"):
        # The same result on one thread (gluon_caffe's operator library, _ext/nms_op.cc): box_nms
        # launches an OpenMP kernel per row, 4-20 ms on a busy 2-core machine against ~0.3 ms.
        kept = mx.sym.gluon_caffe_nms(rows, overlap_thresh=overlap, valid_thresh=-0.5, name=n("nms"))
    else:
        kept = mx.sym.contrib.box_nms(rows, overlap_thresh=overlap, valid_thresh=-0.5, topk=-1, coord_start=2,
                                      score_index=1, id_index=0, background_id=-1, force_suppress=False,
                                      in_format="corner", out_format="corner", name=n("nms"))
    per_image = c * (top_k if 0 < top_k < num_priors else num_priors)
    k = per_image if p.keep_top_k < 0 else min(int(p.keep_top_k), per_image)
    out_k = per_image if p.keep_top_k < 0 else int(p.keep_top_k)
    kept = mx.sym.slice_axis(kept, axis=1, begin=0, end=k)                # (N, k, 6)
    class_idx = mx.sym.slice_axis(kept, axis=2, begin=0, end=1)
    valid = class_idx >= 0
    if idx_name is not None:
        label = mx.sym.take(idx, mx.sym.maximum(class_idx, 0).reshape((0, 0)))
        label = mx.sym.expand_dims(label, axis=2)
    else:
        label = class_idx
    image = mx.sym.reshape(mx.sym.contrib.arange_like(kept, axis=0), shape=(-1, 1, 1))
    image = mx.sym.broadcast_add(image, mx.sym.zeros_like(class_idx))
    det = mx.sym.concat(image, label, mx.sym.slice_axis(kept, axis=2, begin=1, end=6), dim=2)
    det = mx.sym.broadcast_mul(det, valid)                                 # padding rows -> 0
    if out_k > k:
        # More rows than can ever be kept: zero rows up to keep_top_k, as OpenCV's output has.
        pad = mx.sym.broadcast_axis(mx.sym.zeros_like(mx.sym.slice_axis(det, axis=1, begin=0, end=1)),
                                    axis=1, size=out_k - k)
        det = mx.sym.concat(det, pad, dim=1)
        valid = mx.sym.concat(valid, mx.sym.slice_axis(pad, axis=2, begin=0, end=1), dim=1)
    det = mx.sym.reshape(det, shape=(-1, 7))
    # Pack the images' kept rows one after the other, the padding last (OpenCV's layout); the batch
    # size is only known at run time, so this runs for one image too (where it changes nothing).
    # float64 keys stay exact integers for any realistic batch * keep_top_k.
    order = mx.sym.cast(mx.sym.contrib.arange_like(det, axis=0), dtype="float64")
    invalid = mx.sym.cast(1.0 - mx.sym.reshape(valid, shape=(-1,)), dtype="float64")
    key = order + invalid * float(1 << 40)
    det = mx.sym.take(det, mx.sym.argsort(key, dtype="int32"), axis=0)
    out = mx.sym.reshape(det, shape=(1, 1, -1, 7), name=ctx.op_name(layer))
    args = {} if idx_name is None else {idx_name: label_ids}
    return Translation([out], args, {})
