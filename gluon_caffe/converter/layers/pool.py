"""Pooling translator: MAX/AVE, global, pad, CEIL/FLOOR round_mode with Caffe's clip rule."""

import math

import mxnet as mx

from ..proto import caffe_pb2
from ..registry import Translation, register

__all__ = ["translate_pooling", "caffe_pooled_size"]

_P = caffe_pb2.PoolingParameter


def caffe_pooled_size(size, kernel, stride, pad, ceil_mode):
    """Output length of Caffe's PoolingLayer along one axis, clip rule included.

    With padding, Caffe drops the last window when it would start inside the
    padding: ``if (pooled - 1) * stride >= size + pad: pooled -= 1``.
    """
    rnd = math.ceil if ceil_mode else math.floor
    pooled = int(rnd(float(size + 2 * pad - kernel) / stride)) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def _hw(layer, p, field, default, ctx):
    if p.HasField(field + "_h") or p.HasField(field + "_w"):
        if p.HasField(field if field != "kernel" else "kernel_size"):
            raise ctx.error(layer, "pooling_param: %s and %s_h/%s_w are both set; use one",
                            field if field != "kernel" else "kernel_size", field, field)
        return (getattr(p, field + "_h"), getattr(p, field + "_w"))
    name = field if field != "kernel" else "kernel_size"
    if p.HasField(name):
        v = getattr(p, name)
        return (v, v)
    return default


@register("Pooling")
def translate_pooling(layer, inputs, ctx):
    """Pooling with Caffe's exact output size and AVE divisor.

    MXNet's ``pooling_convention='full'`` computes Caffe's CEIL size and its
    AVE divisor (padding counts, the part past ``size + pad`` does not), but not
    the clip rule: when Caffe clips, the extra last row/column is sliced off.
    """
    p = layer.pooling_param
    x = inputs[0]
    if p.pool == _P.STOCHASTIC:
        # Test-phase stochastic pooling is a probability-weighted average; no MXNet op.
        return None
    pool_type = "max" if p.pool == _P.MAX else "avg"
    if p.global_pooling:
        if (p.HasField("pad") and p.pad) or p.pad_h or p.pad_w:
            raise ctx.error(layer, "pooling_param: global_pooling cannot have pad")
        if (p.HasField("stride") and p.stride != 1) or (p.stride_h or 1) != 1 or (p.stride_w or 1) != 1:
            raise ctx.error(layer, "pooling_param: global_pooling needs stride 1")
        if p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w"):
            raise ctx.error(layer, "pooling_param: global_pooling cannot have kernel_size")
        out = mx.sym.Pooling(x, kernel=(1, 1), global_pool=True, pool_type=pool_type,
                             name=ctx.op_name(layer))
        shape = ctx.known_shape(x)
        top = tuple(shape[:2]) + (1, 1) if shape is not None and len(shape) == 4 else None
        return Translation([out], {}, {}, None if top is None else [top])
    kernel = _hw(layer, p, "kernel", None, ctx)
    if kernel is None:
        raise ctx.error(layer, "pooling_param.kernel_size (or kernel_h and kernel_w) is required")
    stride = _hw(layer, p, "stride", (1, 1), ctx)
    pad = _hw(layer, p, "pad", (0, 0), ctx)
    if any(pd >= k for pd, k in zip(pad, kernel)):
        raise ctx.error(layer, "pooling_param: pad %s must be smaller than kernel %s", pad, kernel)
    ceil_mode = p.round_mode == _P.CEIL
    name = ctx.op_name(layer)
    out = mx.sym.Pooling(x, kernel=kernel, stride=stride, pad=pad, pool_type=pool_type,
                         pooling_convention="full" if ceil_mode else "valid",
                         count_include_pad=True, name=name)
    # Only the clip rule needs the input's shape; otherwise it just says the top's, if known.
    shape = ctx.shape(x, layer) if ceil_mode and any(pad) else ctx.known_shape(x)
    if shape is not None and len(shape) != 4:
        if ceil_mode and any(pad):
            raise ctx.error(layer, "Pooling needs a 4-D input, got %s", shape)
        shape = None
    want = None
    if shape is not None:
        want = [caffe_pooled_size(shape[2 + i], kernel[i], stride[i], pad[i], ceil_mode) for i in range(2)]
    if ceil_mode and any(pad):
        full = [int(math.ceil(float(shape[2 + i] + 2 * pad[i] - kernel[i]) / stride[i])) + 1 for i in range(2)]
        if want != full:
            # Only the clipped trailing window differs; the others are computed identically.
            out = mx.sym.slice(out, begin=(None, None, 0, 0), end=(None, None, want[0], want[1]),
                               name=ctx.op_name(layer, "clip"))
    top = tuple(shape[:2]) + tuple(want) if want is not None and min(want) > 0 else None
    return Translation([out], {}, {}, None if top is None else [top])
