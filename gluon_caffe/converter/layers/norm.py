"""Normalisation and scaling translators: BatchNorm, Scale, Bias, LRN, MVN, Softmax."""

import mxnet as mx
import numpy as np

from ..proto import caffe_pb2
from ..registry import Translation, register

__all__ = ["translate_batch_norm", "translate_scale", "translate_bias", "translate_lrn",
           "translate_mvn", "translate_softmax", "batch_norm_stats"]


def batch_norm_stats(blobs):
    """Caffe's stored BatchNorm statistics divided by the moving-average factor (blob 2; 0 gives 0)."""
    factor = np.float32(blobs[2].reshape(-1)[0])
    scale = np.float32(0) if factor == 0 else np.float32(1) / factor
    mean = (np.asarray(blobs[0], np.float32) * scale).astype(np.float32)
    var = (np.asarray(blobs[1], np.float32) * scale).astype(np.float32)
    return mean, var


@register("BatchNorm")
def translate_batch_norm(layer, inputs, ctx):
    """BatchNorm over axis 1 with the stored statistics and Caffe's exact ``eps``.

    The statistics are divided by the scale-factor blob at conversion time.
    ``use_global_stats: false`` at test time makes Caffe normalise with the
    batch's own mean and (biased) variance, which is what we emit then.
    """
    p = layer.batch_norm_param
    x = inputs[0]
    eps = float(np.float32(p.eps))
    use_global = p.use_global_stats if p.HasField("use_global_stats") else True
    if not use_global:
        mean = mx.sym.mean(x, axis=1, exclude=True, keepdims=True, name=ctx.op_name(layer, "batch_mean"))
        centred = mx.sym.broadcast_sub(x, mean, name=ctx.op_name(layer, "centred"))
        var = mx.sym.mean(mx.sym.square(centred), axis=1, exclude=True, keepdims=True,
                          name=ctx.op_name(layer, "batch_var"))
        std = mx.sym.sqrt(var + eps, name=ctx.op_name(layer, "std"))
        return Translation([mx.sym.broadcast_div(centred, std, name=ctx.op_name(layer))], {}, {})
    shape = ctx.shape(x)
    channels = shape[1] if shape else None
    blobs = ctx.blobs(layer, 3, ("mean", "variance", "moving-average factor"))
    names = {k: "%s_%s" % (layer.name, k) for k in ("gamma", "beta", "moving_mean", "moving_var")}
    args, aux = {}, {}
    if blobs is not None:
        for i, what in enumerate(("mean", "variance")):
            blobs[i] = ctx.check_blob(layer, i, blobs[i], (channels,), (what, "the input's channels"))
            channels = blobs[i].shape[0]
        blobs[2] = ctx.check_blob(layer, 2, blobs[2], (1,), ("moving-average factor", "one value"))
        aux[names["moving_mean"]], aux[names["moving_var"]] = batch_norm_stats(blobs[:3])
        # Blobs 3 and 4 exist when passes.merge_scale_into_batch_norm gave it the Scale after it.
        args[names["gamma"]] = blobs[3] if len(blobs) == 5 else np.ones(channels, np.float32)
        args[names["beta"]] = blobs[4] if len(blobs) == 5 else np.zeros(channels, np.float32)
    cshape = None if channels is None else (channels,)
    merged = blobs is not None and len(blobs) == 5
    out = mx.sym.BatchNorm(x, gamma=ctx.var(names["gamma"], cshape), beta=ctx.var(names["beta"], cshape),
                           moving_mean=ctx.var(names["moving_mean"], cshape),
                           moving_var=ctx.var(names["moving_var"], cshape),
                           eps=eps, fix_gamma=not merged, use_global_stats=True, axis=1, name=ctx.op_name(layer))
    return Translation([out], args, aux)


def _param_shape(layer, ctx, x_shape, axis, num_axes):
    ndim = len(x_shape)
    axis = ctx.canonical_axis(layer, axis, ndim)
    if num_axes < -1:
        raise ctx.error(layer, "num_axes must be >= -1, got %d", num_axes)
    end = ndim if num_axes == -1 else axis + num_axes
    if end > ndim:
        raise ctx.error(layer, "axis %d + num_axes %d exceed the input's %d axes", axis, num_axes, ndim)
    return axis, tuple(x_shape[axis:end])


def _broadcastable(layer, ctx, x_shape, axis, pshape):
    """Shape that right-aligns a parameter of Caffe shape ``pshape`` placed at ``axis`` of ``x``."""
    if tuple(x_shape[axis:axis + len(pshape)]) != tuple(pshape):
        raise ctx.error(layer, "parameter shape %s does not match input shape %s at axis %d",
                        tuple(pshape), tuple(x_shape), axis)
    return tuple(pshape) + (1,) * (len(x_shape) - axis - len(pshape))


def _scale_or_bias(layer, inputs, ctx, p, kind):
    x = inputs[0]
    x_shape = ctx.shape(x, layer)
    op = mx.sym.broadcast_mul if kind == "scale" else mx.sym.broadcast_add
    args = {}
    if len(inputs) == 2:
        # Two-bottom form: the second bottom is the scale (or bias) placed at ``axis``;
        # num_axes does not apply.
        core = ctx.shape(inputs[1], layer)
        axis = ctx.canonical_axis(layer, p.axis, len(x_shape))
        bshape = _broadcastable(layer, ctx, x_shape, axis, core)
        other = inputs[1]
        for _ in range(len(bshape) - len(core)):
            other = mx.sym.expand_dims(other, axis=-1)
        n_learned = 0
    else:
        axis, core = _param_shape(layer, ctx, x_shape, p.axis, p.num_axes)
        bshape = _broadcastable(layer, ctx, x_shape, axis, core)
        other = None
        n_learned = 1
    with_bias = kind == "scale" and p.bias_term
    what = ([kind] if n_learned else []) + (["bias"] if with_bias else [])
    blobs = ctx.blobs(layer, len(what), what)
    field = "%s_param (axis=%d, num_axes=%d) on input %s" % (kind, p.axis, p.num_axes, x_shape)
    if other is None:
        pname = "%s_%s" % (layer.name, "gamma" if kind == "scale" else "beta")
        if blobs is not None:
            args[pname] = ctx.f32(ctx.check_blob(layer, 0, blobs[0], core, (kind, field))).reshape(bshape)
        other = ctx.var(pname, shape=bshape)
    out = op(x, other, name=ctx.op_name(layer, "mul") if with_bias else ctx.op_name(layer))
    if with_bias:
        bname = "%s_beta" % layer.name
        if blobs is not None:
            args[bname] = ctx.f32(ctx.check_blob(layer, n_learned, blobs[n_learned], core,
                                                 ("bias", field))).reshape(bshape)
        out = mx.sym.broadcast_add(out, ctx.var(bname, shape=bshape), name=ctx.op_name(layer))
    return Translation([out], args, {})


@register("Scale")
def translate_scale(layer, inputs, ctx):
    """Scale: multiply by a learned (one bottom) or given (two bottoms) tensor, optional bias."""
    return _scale_or_bias(layer, inputs, ctx, layer.scale_param, "scale")


@register("Bias")
def translate_bias(layer, inputs, ctx):
    """Bias: add a learned (one bottom) or given (two bottoms) tensor at ``axis``."""
    return _scale_or_bias(layer, inputs, ctx, layer.bias_param, "bias")


@register("LRN")
def translate_lrn(layer, inputs, ctx):
    """LRN across channels (MXNet LRN) or within a channel (average of squares over a window)."""
    p = layer.lrn_param
    x = inputs[0]
    if p.local_size % 2 != 1:
        raise ctx.error(layer, "lrn_param.local_size must be odd, got %d", p.local_size)
    if p.norm_region == caffe_pb2.LRNParameter.ACROSS_CHANNELS:
        out = mx.sym.LRN(x, alpha=p.alpha, beta=p.beta, knorm=p.k, nsize=p.local_size, name=ctx.op_name(layer))
        return Translation([out], {}, {})
    # WITHIN_CHANNEL: x * (1 + alpha * avgpool(x^2))^-beta, the pool padding counting in the average.
    pad = (p.local_size - 1) // 2
    sq = mx.sym.square(x, name=ctx.op_name(layer, "square"))
    avg = mx.sym.Pooling(sq, kernel=(p.local_size, p.local_size), stride=(1, 1), pad=(pad, pad),
                         pool_type="avg", pooling_convention="full", count_include_pad=True,
                         name=ctx.op_name(layer, "pool"))
    scale = mx.sym._internal._power_scalar(avg * float(p.alpha) + 1.0, scalar=-float(p.beta),
                                           name=ctx.op_name(layer, "scale"))
    return Translation([mx.sym.elemwise_mul(x, scale, name=ctx.op_name(layer))], {}, {})


@register("MVN")
def translate_mvn(layer, inputs, ctx):
    """MVN: subtract the mean and optionally divide by (std + eps), per channel or across channels."""
    p = layer.mvn_param
    x = inputs[0]
    keep = (0,) if p.across_channels else (0, 1)
    mean = mx.sym.mean(x, axis=keep, exclude=True, keepdims=True, name=ctx.op_name(layer, "mean"))
    centred = mx.sym.broadcast_sub(x, mean, name=ctx.op_name(layer, "centred") if p.normalize_variance
                                   else ctx.op_name(layer))
    if not p.normalize_variance:
        return Translation([centred], {}, {})
    var = mx.sym.mean(mx.sym.square(centred), axis=keep, exclude=True, keepdims=True,
                      name=ctx.op_name(layer, "var"))
    std = mx.sym.sqrt(var, name=ctx.op_name(layer, "std")) + float(np.float32(p.eps))
    return Translation([mx.sym.broadcast_div(centred, std, name=ctx.op_name(layer))], {}, {})


@register("Softmax")
def translate_softmax(layer, inputs, ctx):
    """Softmax over ``softmax_param.axis`` (default 1), with no label argument."""
    axis = layer.softmax_param.axis
    if axis < 0:
        shape = ctx.shape(inputs[0])
        if shape is not None:
            axis = ctx.canonical_axis(layer, axis, len(shape))
    return Translation([mx.sym.softmax(inputs[0], axis=axis, name=ctx.op_name(layer))], {}, {})
