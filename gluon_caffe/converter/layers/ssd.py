"""SSD translators (weiliu89/caffe ssd branch). Permute is native; Normalize, PriorBox and
DetectionOutput are not mapped yet and go through the fallback hook."""

import mxnet as mx

from ..registry import Translation, register

__all__ = ["translate_permute"]


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
