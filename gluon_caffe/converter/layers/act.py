"""Element-wise (neuron) layer translators: ReLU, PReLU, ELU, Sigmoid, TanH, AbsVal, BNLL, Power, Exp, Log, Threshold, Clip, Swish, Dropout."""

import math

import mxnet as mx
import numpy as np

from ..registry import Translation, register

__all__ = ["translate_relu", "translate_prelu", "translate_elu", "translate_sigmoid", "translate_tanh",
           "translate_absval", "translate_bnll", "translate_power", "translate_exp", "translate_log",
           "translate_threshold", "translate_clip", "translate_swish", "translate_dropout"]


def _one(out):
    return Translation([out], {}, {})


@register("ReLU")
def translate_relu(layer, inputs, ctx):
    """ReLU, or leaky ReLU with ``negative_slope`` (Caffe: max(x,0) + slope*min(x,0))."""
    slope = layer.relu_param.negative_slope
    if slope == 0:
        return _one(mx.sym.Activation(inputs[0], act_type="relu", name=ctx.op_name(layer)))
    return _one(mx.sym.LeakyReLU(inputs[0], act_type="leaky", slope=slope, name=ctx.op_name(layer)))


@register("PReLU")
def translate_prelu(layer, inputs, ctx):
    """PReLU with per-channel slopes (axis 1) or one shared slope (``channel_shared``).

    Caffe computes ``max(x, 0) + a * min(x, 0)``. MXNet's ``LeakyReLU(act_type="prelu")`` runs a
    generic broadcast kernel (O-Net b8: 4.4 ms for one 8x32x46x46 PReLU where a ReLU takes 0.1 ms),
    so a per-channel PReLU on a 4-D input is written with MKLDNN operators instead, with the same
    arithmetic: ``m = relu(conv1x1_dw(x, -1)) = -min(x, 0)``, then
    ``relu(x) + conv1x1_dw(m, -a)``, both 1x1 depthwise convolutions being single products (exact).
    Both convolution weights are computed in the graph from the ``<name>_gamma`` parameter (C,), so
    the parameter, its gradient and the ONNX export stay those of a PReLU; for an inference-only
    graph (``import_model(inference=True)``) they are constants ``<name>_flip_weight`` and
    ``<name>_scale_weight`` instead. Other inputs (2-D, unknown shape, ``channel_shared``) use
    ``LeakyReLU(act_type="prelu")``.
    """
    shared = layer.prelu_param.channel_shared
    shape = ctx.shape(inputs[0])
    channels = 1 if shared else (shape[1] if shape else None)
    blobs = ctx.blobs(layer, 1, ("slope",))
    name = layer.name + "_gamma"
    args = {}
    if blobs is not None:
        slope = ctx.check_blob(layer, 0, blobs[0], (channels,),
                               ("slope", "prelu_param.channel_shared=%s" % str(shared).lower()))
        args[name] = ctx.f32(slope)
    gamma = ctx.var(name, shape=None if channels is None else (channels,))
    x = inputs[0]
    if shared or shape is None or len(shape) != 4:
        # MXNet's prelu applies gamma along axis 1 and broadcasts a 1-element gamma (channel_shared).
        out = mx.sym.LeakyReLU(x, gamma=gamma, act_type="prelu", name=ctx.op_name(layer))
        return Translation([out], args, {})
    dw = dict(kernel=(1, 1), num_filter=channels, num_group=channels, no_bias=True)
    w_shape = (channels, 1, 1, 1)
    if ctx.inference and name in args:
        flip_w, scale_w = -np.ones(w_shape, np.float32), -args.pop(name).reshape(w_shape)
        args = {layer.name + "_flip_weight": flip_w, layer.name + "_scale_weight": scale_w}
        minus_one = ctx.var(layer.name + "_flip_weight", value=flip_w)
        neg_slope = ctx.var(layer.name + "_scale_weight", value=scale_w)
    else:
        # Constant -1 weights derived from gamma (no extra parameter, no gradient reaches gamma).
        ones = mx.sym.ones_like(gamma, name=ctx.op_name(layer, "ones"))
        minus_one = mx.sym.negative(mx.sym.reshape(ones, shape=w_shape, name=ctx.op_name(layer, "ones_w")),
                                    name=ctx.op_name(layer, "minus_one"))
        neg_slope = mx.sym.negative(mx.sym.reshape(gamma, shape=w_shape, name=ctx.op_name(layer, "slope_w")),
                                    name=ctx.op_name(layer, "neg_slope"))
    pos = mx.sym.Activation(x, act_type="relu", name=ctx.op_name(layer, "pos"))
    flipped = mx.sym.Convolution(x, minus_one, name=ctx.op_name(layer, "flip"), **dw)
    neg = mx.sym.Activation(flipped, act_type="relu", name=ctx.op_name(layer, "neg"))
    scaled = mx.sym.Convolution(neg, neg_slope, name=ctx.op_name(layer, "scaled"), **dw)
    out = mx.sym.elemwise_add(scaled, pos, name=ctx.op_name(layer))
    return Translation([out], args, {})


@register("ELU")
def translate_elu(layer, inputs, ctx):
    """ELU: x if x > 0 else alpha * (exp(x) - 1)."""
    return _one(mx.sym.LeakyReLU(inputs[0], act_type="elu", slope=layer.elu_param.alpha,
                                 name=ctx.op_name(layer)))


@register("Sigmoid")
def translate_sigmoid(layer, inputs, ctx):
    """Sigmoid."""
    return _one(mx.sym.Activation(inputs[0], act_type="sigmoid", name=ctx.op_name(layer)))


@register("TanH")
def translate_tanh(layer, inputs, ctx):
    """TanH."""
    return _one(mx.sym.Activation(inputs[0], act_type="tanh", name=ctx.op_name(layer)))


@register("AbsVal")
def translate_absval(layer, inputs, ctx):
    """AbsVal."""
    return _one(mx.sym.abs(inputs[0], name=ctx.op_name(layer)))


@register("BNLL")
def translate_bnll(layer, inputs, ctx):
    """BNLL: log(1 + exp(x)), MXNet's softrelu."""
    return _one(mx.sym.Activation(inputs[0], act_type="softrelu", name=ctx.op_name(layer)))


def _affine(x, scale, shift):
    # Same operation order as Caffe: scale first, then shift.
    if scale != 1:
        x = x * float(scale)
    if shift != 0:
        x = x + float(shift)
    return x


@register("Power")
def translate_power(layer, inputs, ctx):
    """Power: (shift + scale * x) ^ power, with Caffe's constant case when power * scale == 0."""
    p = layer.power_param
    x = inputs[0]
    name = ctx.op_name(layer)
    if p.power * p.scale == 0:
        # Caffe fills the output with a constant (1 when power == 0, else shift^power).
        value = 1.0 if p.power == 0 else float(np.float32(p.shift) ** np.float32(p.power))
        return _one(mx.sym.ones_like(x, name=name) * value if value != 1.0
                    else mx.sym.ones_like(x, name=name))
    y = _affine(x, p.scale, p.shift)
    if p.power == 1:
        out = mx.sym.identity(y, name=name)
    elif p.power == 2:
        out = mx.sym.square(y, name=name)
    else:
        out = mx.sym._internal._power_scalar(y, scalar=float(p.power), name=name)
    return _one(out)


@register("Exp")
def translate_exp(layer, inputs, ctx):
    """Exp: base ^ (shift + scale * x); base -1 means e."""
    p = layer.exp_param
    if p.base != -1 and p.base <= 0:
        raise ctx.error(layer, "exp_param.base must be -1 (e) or positive, got %g", p.base)
    log_base = 1.0 if p.base == -1 else math.log(p.base)
    # Caffe: outer * exp(inner * x) with inner = ln(base)*scale, outer = base^shift.
    inner = float(np.float32(log_base) * np.float32(p.scale))
    if p.shift == 0:
        outer = 1.0
    elif p.base == -1:
        outer = float(np.float32(math.exp(p.shift)))
    else:
        outer = float(np.float32(p.base) ** np.float32(p.shift))
    x = inputs[0]
    if inner != 1:
        x = x * inner
    out = mx.sym.exp(x, name=ctx.op_name(layer) if outer == 1 else ctx.op_name(layer, "exp"))
    if outer != 1:
        out = mx.sym._internal._mul_scalar(out, scalar=outer, name=ctx.op_name(layer))
    return _one(out)


@register("Log")
def translate_log(layer, inputs, ctx):
    """Log: log_base(shift + scale * x); base -1 means e."""
    p = layer.log_param
    if p.base != -1 and p.base <= 0:
        raise ctx.error(layer, "log_param.base must be -1 (e) or positive, got %g", p.base)
    x = _affine(inputs[0], p.scale, p.shift)
    if p.base == -1:
        return _one(mx.sym.log(x, name=ctx.op_name(layer)))
    base_scale = float(np.float32(1.0 / math.log(p.base)))
    out = mx.sym.log(x, name=ctx.op_name(layer, "ln"))
    return _one(mx.sym._internal._mul_scalar(out, scalar=base_scale, name=ctx.op_name(layer)))


@register("Threshold")
def translate_threshold(layer, inputs, ctx):
    """Threshold: 1 where x > threshold, else 0."""
    return _one(mx.sym._internal._greater_scalar(inputs[0], scalar=float(layer.threshold_param.threshold),
                                                 name=ctx.op_name(layer)))


@register("Clip")
def translate_clip(layer, inputs, ctx):
    """Clip to [min, max]."""
    p = layer.clip_param
    return _one(mx.sym.clip(inputs[0], a_min=p.min, a_max=p.max, name=ctx.op_name(layer)))


@register("Swish")
def translate_swish(layer, inputs, ctx):
    """Swish: x * sigmoid(beta * x)."""
    beta = layer.swish_param.beta
    x = inputs[0]
    s = mx.sym.sigmoid(x * float(beta) if beta != 1 else x, name=ctx.op_name(layer, "sigmoid"))
    return _one(mx.sym.elemwise_mul(x, s, name=ctx.op_name(layer)))


@register("Dropout")
def translate_dropout(layer, inputs, ctx):
    """Dropout: the identity at inference (Caffe scales at train time)."""
    return _one(mx.sym.identity(inputs[0], name=ctx.op_name(layer)))
