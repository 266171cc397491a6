"""Eltwise (SUM with coefficients, PROD, MAX), Reduction and ArgMax translators."""

import mxnet as mx

from ..proto import caffe_pb2
from ..registry import Translation, register

__all__ = ["translate_eltwise", "translate_reduction", "translate_argmax"]

_E = caffe_pb2.EltwiseParameter
_R = caffe_pb2.ReductionParameter


@register("Eltwise")
def translate_eltwise(layer, inputs, ctx):
    """Eltwise PROD, MAX or SUM (with per-bottom ``coeff``), applied left to right like Caffe."""
    p = layer.eltwise_param
    name = ctx.op_name(layer)
    if len(inputs) < 2:
        raise ctx.error(layer, "Eltwise needs at least two bottoms, got %d", len(inputs))
    if len(p.coeff) and p.operation != _E.SUM:
        raise ctx.error(layer, "eltwise_param.coeff is only allowed with operation SUM")
    if p.operation == _E.SUM:
        coeffs = list(p.coeff) or [1.0] * len(inputs)
        if len(coeffs) != len(inputs):
            raise ctx.error(layer, "eltwise_param has %d coeff values for %d bottoms", len(coeffs), len(inputs))
        if len(inputs) == 2 and coeffs == [1, 1]:
            # elemwise_add, not add_n: MXNet's MKLDNN backend fuses it into the convolution producing
            # one of its inputs (a residual sum), and it is the same single addition.
            out = mx.sym.elemwise_add(inputs[0], inputs[1], name=name)
        elif all(c == 1 for c in coeffs):
            out = mx.sym.add_n(*inputs, name=name)
        else:
            terms = [x if c == 1 else x * float(c) for x, c in zip(inputs, coeffs)]
            out = mx.sym.add_n(*terms, name=name)
    elif p.operation == _E.PROD:
        out = inputs[0]
        for i, x in enumerate(inputs[1:], start=1):
            out = mx.sym.elemwise_mul(out, x, name=name if i == len(inputs) - 1 else None)
    elif p.operation == _E.MAX:
        out = inputs[0]
        for i, x in enumerate(inputs[1:], start=1):
            out = mx.sym.broadcast_maximum(out, x, name=name if i == len(inputs) - 1 else None)
    else:  # pragma: no cover - enum is closed
        raise ctx.error(layer, "unknown eltwise_param.operation %d", p.operation)
    return Translation([out], {}, {})


@register("Reduction")
def translate_reduction(layer, inputs, ctx):
    """Reduction (SUM, ASUM, SUMSQ, MEAN) over all axes from ``axis`` on, times ``coeff``."""
    p = layer.reduction_param
    x = inputs[0]
    shape = ctx.shape(x, layer)
    axis = ctx.canonical_axis(layer, p.axis, len(shape))
    flat = mx.sym.reshape(x, shape=tuple([0] * axis) + (-1,), name=ctx.op_name(layer, "flatten"))
    if p.operation == _R.ASUM:
        flat = mx.sym.abs(flat)
    elif p.operation == _R.SUMSQ:
        flat = mx.sym.square(flat)
    reducer = mx.sym.mean if p.operation == _R.MEAN else mx.sym.sum
    has_coeff = p.coeff != 1
    out = reducer(flat, axis=axis, name=ctx.op_name(layer, "reduce") if has_coeff else ctx.op_name(layer))
    if has_coeff:
        out = mx.sym._internal._mul_scalar(out, scalar=float(p.coeff), name=ctx.op_name(layer))
    return Translation([out], {}, {})


@register("ArgMax")
def translate_argmax(layer, inputs, ctx):
    """ArgMax: top_k indices (and values with ``out_max_val``) per sample or along ``axis``."""
    p = layer.argmax_param
    x = inputs[0]
    k = p.top_k
    if p.HasField("axis"):
        shape = ctx.shape(x, layer)
        axis = ctx.canonical_axis(layer, p.axis, len(shape))
        if k > shape[axis]:
            raise ctx.error(layer, "argmax_param.top_k %d exceeds axis size %d", k, shape[axis])
        # With an axis, Caffe outputs only the values when out_max_val is set.
        out = mx.sym.topk(x, axis=axis, k=k, ret_typ="value" if p.out_max_val else "indices",
                          is_ascend=False, dtype="float32", name=ctx.op_name(layer))
        return Translation([out], {}, {})
    flat = mx.sym.reshape(x, shape=(0, -1), name=ctx.op_name(layer, "flatten"))
    idx = mx.sym.topk(flat, axis=1, k=k, ret_typ="indices", is_ascend=False, dtype="float32",
                      name=ctx.op_name(layer, "indices"))
    idx = mx.sym.expand_dims(idx, axis=1)
    if not p.out_max_val:
        return Translation([mx.sym.identity(idx, name=ctx.op_name(layer))], {}, {})
    val = mx.sym.topk(flat, axis=1, k=k, ret_typ="value", is_ascend=False, name=ctx.op_name(layer, "values"))
    out = mx.sym.concat(idx, mx.sym.expand_dims(val, axis=1), dim=1, name=ctx.op_name(layer))
    return Translation([out], {}, {})
