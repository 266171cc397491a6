"""Convolution, Deconvolution, InnerProduct and Embed translators."""

import mxnet as mx
import numpy as np

from ..registry import Translation, register

__all__ = ["translate_convolution", "translate_deconvolution", "translate_inner_product",
           "translate_embed", "conv_geometry"]


def _err(layer, msg, *args):
    from ..context import ConvertContext
    return ConvertContext.error(layer, msg, *args)


def _per_axis(layer, p, field, field_h, field_w, default, n):
    """Caffe's repeated ``field`` or its ``*_h``/``*_w`` pair as an ``n``-tuple (BaseConvolutionLayer)."""
    values = list(getattr(p, field))
    if p.HasField(field_h) or p.HasField(field_w):
        if n != 2:
            raise _err(layer, "%s/%s can only be used for 2-D convolution", field_h, field_w)
        if values:
            raise _err(layer, "%s and %s/%s are both set; use one", field, field_h, field_w)
        if default is None and not (p.HasField(field_h) and p.HasField(field_w)):
            raise _err(layer, "%s and %s must both be set", field_h, field_w)
        return (getattr(p, field_h), getattr(p, field_w))
    if not values:
        if default is None:
            raise _err(layer, "%s (or %s and %s) is required", field, field_h, field_w)
        return (default,) * n
    if len(values) == 1:
        return (values[0],) * n
    if len(values) != n:
        raise _err(layer, "%s has %d values for %d spatial axes", field, len(values), n)
    return tuple(values)


def conv_geometry(layer, p, n_spatial):
    """Kernel, stride, pad and dilation of a ConvolutionParameter as ``n_spatial``-tuples."""
    kernel = _per_axis(layer, p, "kernel_size", "kernel_h", "kernel_w", None, n_spatial)
    stride = _per_axis(layer, p, "stride", "stride_h", "stride_w", 1, n_spatial)
    pad = _per_axis(layer, p, "pad", "pad_h", "pad_w", 0, n_spatial)
    dilation = tuple(p.dilation) or (1,)
    if len(dilation) == 1:
        dilation = dilation * n_spatial
    elif len(dilation) != n_spatial:
        raise _err(layer, "dilation has %d values for %d spatial axes", len(dilation), n_spatial)
    return kernel, stride, pad, dilation


def _conv_common(layer, inputs, ctx, deconv):
    p = layer.convolution_param
    # Several bottoms share the weights, each making its own top (as in Caffe).
    shape = ctx.shape(inputs[0])
    if p.axis != 1 and not (shape and ctx.canonical_axis(layer, p.axis, len(shape)) == 1):
        raise ctx.error(layer, "convolution_param.axis=%d: only the channel axis 1 is supported", p.axis)
    n_spatial = (len(shape) - 2) if shape else max(len(p.kernel_size), 2 if p.HasField("kernel_h") else 1, 2)
    if n_spatial not in (1, 2, 3):
        raise ctx.error(layer, "%d spatial axes: MXNet convolution supports 1 to 3", n_spatial)
    kernel, stride, pad, dilation = conv_geometry(layer, p, n_spatial)
    if not p.HasField("num_output"):
        raise ctx.error(layer, "convolution_param.num_output is required")
    group = p.group
    channels = shape[1] if shape else None
    if channels is not None and channels % group:
        raise ctx.error(layer, "input channels %d are not a multiple of group %d", channels, group)
    if p.num_output % group:
        raise ctx.error(layer, "num_output %d is not a multiple of group %d", p.num_output, group)
    if deconv:
        wshape = (channels, p.num_output // group) + kernel
    else:
        wshape = (p.num_output, None if channels is None else channels // group) + kernel
    names = ("weight", "bias") if p.bias_term else ("weight",)
    blobs = ctx.blobs(layer, len(names), names)
    field = "convolution_param (num_output=%d, group=%d, kernel=%s)" % (p.num_output, group, kernel)
    wname, bname = layer.name + "_weight", layer.name + "_bias"
    args = {}
    if blobs is not None:
        args[wname] = ctx.f32(ctx.check_blob(layer, 0, blobs[0], wshape, ("weight", field)))
        if p.bias_term:
            args[bname] = ctx.f32(ctx.check_blob(layer, 1, blobs[1], (p.num_output,), ("bias", "num_output")))
    wshape_known = None if None in wshape else wshape
    weight = ctx.var(wname, shape=wshape_known, value=args.get(wname))
    bias = ctx.var(bname, shape=(p.num_output,)) if p.bias_term else None
    op = mx.sym.Deconvolution if deconv else mx.sym.Convolution
    outputs, shapes = [], []
    for i, x in enumerate(inputs):
        kw = dict(kernel=kernel, stride=stride, pad=pad, dilate=dilation, num_filter=p.num_output,
                  num_group=group, no_bias=not p.bias_term, name=ctx.op_name(layer, None if i == 0 else str(i)))
        if deconv:
            kw["adj"] = (0,) * n_spatial
        if p.bias_term:
            outputs.append(op(data=x, weight=weight, bias=bias, **kw))
        else:
            outputs.append(op(data=x, weight=weight, **kw))
        shapes.append(_conv_top_shape(ctx.known_shape(x) if i else shape, p.num_output, kernel, stride,
                                      pad, dilation, deconv))
    return Translation(outputs, args, {}, shapes if None not in shapes else None)


def _conv_top_shape(shape, num_output, kernel, stride, pad, dilation, deconv):
    """Caffe's top shape for a (de)convolution of a ``shape`` bottom (None if unknown or empty)."""
    if shape is None or len(shape) != 2 + len(kernel):
        return None
    out = [shape[0], num_output]
    for size, k, s, pd, d in zip(shape[2:], kernel, stride, pad, dilation):
        extent = d * (k - 1) + 1
        out.append(s * (size - 1) + extent - 2 * pd if deconv else (size + 2 * pd - extent) // s + 1)
    return tuple(out) if min(out) > 0 else None


@register("Convolution")
def translate_convolution(layer, inputs, ctx):
    """Convolution with group, dilation, ``*_h/_w`` or repeated per-axis values, optional bias."""
    return _conv_common(layer, inputs, ctx, deconv=False)


@register("Deconvolution")
def translate_deconvolution(layer, inputs, ctx):
    """Deconvolution: Caffe's weight layout (C_in, num_output/group, k...) is MXNet's too."""
    return _conv_common(layer, inputs, ctx, deconv=True)


@register("InnerProduct")
def translate_inner_product(layer, inputs, ctx):
    """InnerProduct over the axes from ``axis`` on, with ``transpose`` weights and optional bias."""
    p = layer.inner_product_param
    x = inputs[0]
    if not p.HasField("num_output"):
        raise ctx.error(layer, "inner_product_param.num_output is required")
    n = p.num_output
    shape = ctx.shape(x)
    k = None
    axis = p.axis
    if shape is not None:
        axis = ctx.canonical_axis(layer, p.axis, len(shape))
        k = int(np.prod(shape[axis:]))
    names = ("weight", "bias") if p.bias_term else ("weight",)
    blobs = ctx.blobs(layer, len(names), names)
    wname, bname = layer.name + "_weight", layer.name + "_bias"
    args = {}
    if blobs is not None:
        wshape = (k, n) if p.transpose else (n, k)
        w = ctx.check_blob(layer, 0, blobs[0], wshape,
                           ("weight", "inner_product_param (num_output=%d, transpose=%s)" % (n, p.transpose)))
        args[wname] = ctx.f32(w.T if p.transpose else w)
        if p.bias_term:
            args[bname] = ctx.f32(ctx.check_blob(layer, 1, blobs[1], (n,), ("bias", "num_output")))
    weight = ctx.var(wname, shape=None if k is None else (n, k))
    bias = ctx.var(bname, shape=(n,)) if p.bias_term else None
    extra = {"bias": bias} if p.bias_term else {}
    if axis == 1:
        out = mx.sym.FullyConnected(x, weight=weight, num_hidden=n, no_bias=not p.bias_term,
                                    flatten=True, name=ctx.op_name(layer), **extra)
    else:
        if shape is None:
            raise ctx.error(layer, "inner_product_param.axis=%d needs the input shape", p.axis)
        # Caffe keeps the leading axes: merge the trailing ones, run FC on the last axis.
        merged = mx.sym.reshape(x, shape=tuple([0] * axis) + (-1,), name=ctx.op_name(layer, "flatten"))
        out = mx.sym.FullyConnected(merged, weight=weight, num_hidden=n, no_bias=not p.bias_term,
                                    flatten=False, name=ctx.op_name(layer), **extra)
    top = None if shape is None else tuple(shape[:axis]) + (n,)
    return Translation([out], args, {}, None if top is None else [top])


@register("Embed")
def translate_embed(layer, inputs, ctx):
    """Embed: row lookup of a (input_dim, num_output) table, plus an optional bias."""
    p = layer.embed_param
    names = ("weight", "bias") if p.bias_term else ("weight",)
    blobs = ctx.blobs(layer, len(names), names)
    wname, bname = layer.name + "_weight", layer.name + "_bias"
    args = {}
    if blobs is not None:
        args[wname] = ctx.f32(ctx.check_blob(layer, 0, blobs[0], (p.input_dim, p.num_output),
                                             ("weight", "embed_param (input_dim, num_output)")))
        if p.bias_term:
            args[bname] = ctx.f32(ctx.check_blob(layer, 1, blobs[1], (p.num_output,), ("bias", "num_output")))
    weight = ctx.var(wname, shape=(p.input_dim, p.num_output))
    out = mx.sym.Embedding(inputs[0], weight=weight, input_dim=p.input_dim, output_dim=p.num_output,
                           name=ctx.op_name(layer, "lookup" if p.bias_term else None))
    if p.bias_term:
        bias = ctx.var(bname, shape=(p.num_output,))
        out = mx.sym.broadcast_add(out, bias, name=ctx.op_name(layer))
    return Translation([out], args, {})
