"""Graph rewrites on the V2 net before translation: Scale into BatchNorm, BatchNorm/Scale into convolutions."""

import numpy as np

from .layers.norm import batch_norm_stats
from .proto import caffe_pb2

__all__ = ["fuse_batch_norm", "merge_scale_into_batch_norm", "consumers"]


def consumers(net):
    """Blob name -> list of indices of the layers that read it (after each write, in order)."""
    out = {}
    for i, l in enumerate(net.layer):
        for b in l.bottom:
            out.setdefault(b, []).append(i)
    return out


def _only_reader(net, blob, start, reader):
    """True when, from layer ``start`` on, ``reader`` is the only layer reading ``blob`` before it is rewritten."""
    for j in range(start, len(net.layer)):
        l = net.layer[j]
        if j == reader:
            if blob in l.top:  # in place: later reads see the reader's own output
                return True
            continue
        if blob in l.bottom:
            return False
        if j > reader and blob in l.top:
            return True
    return True


def _channel_scale_after(net, layers, j, weights):
    """Index of the Scale that alone reads layer ``j``'s single top with learned per-channel factors, or None."""
    if len(layers[j].top) != 1:
        return None
    top = layers[j].top[0]
    k = next((m for m in range(j + 1, len(layers)) if top in layers[m].bottom), None)
    if (k is not None and layers[k].type == "Scale" and len(layers[k].bottom) == 1
            and layers[k].scale_param.axis in (1, -3) and layers[k].scale_param.num_axes == 1
            and layers[k].name in weights and _only_reader(net, top, j + 1, k)):
        return k
    return None


def _without(net, layers, drop):
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    out.layer.extend(l for idx, l in enumerate(layers) if idx not in drop)
    return out


def merge_scale_into_batch_norm(net, weights):
    """Give each BatchNorm the per-channel Scale right after it as its gamma and beta.

    MXNet then runs one BatchNorm (fast, MKLDNN) instead of BatchNorm plus two broadcast ops (slow);
    the result is the same up to float rounding (one fused multiply-add instead of two steps). The
    merged BatchNorm carries five blobs: mean, variance, factor, gamma, beta. Applied only with
    weights, stored statistics and a Scale that alone reads the BatchNorm's top; that top then
    takes the Scale's name (a non-in-place BatchNorm output disappears from the converted graph).

    Parameters
    ----------
    net : caffe_pb2.NetParameter
        V2 net; a rewritten copy is returned, ``net`` is left alone.
    weights : dict or None
        Layer name -> list of arrays; a new dict is returned.

    Returns
    -------
    (caffe_pb2.NetParameter, dict)
    """
    if weights is None:
        return net, weights
    weights = dict(weights)
    layers = list(net.layer)
    drop = set()
    for j, bn in enumerate(layers):
        p = bn.batch_norm_param
        if (bn.type != "BatchNorm" or bn.name not in weights or len(weights[bn.name]) != 3
                or (p.HasField("use_global_stats") and not p.use_global_stats)):
            continue
        k = _channel_scale_after(net, layers, j, weights)
        if k is None:
            continue
        scale = layers[k]
        blobs = weights[scale.name]
        gamma = np.asarray(blobs[0], np.float32).reshape(-1)
        beta = (np.asarray(blobs[1], np.float32).reshape(-1) if scale.scale_param.bias_term
                else np.zeros_like(gamma))
        weights[bn.name] = list(weights[bn.name]) + [gamma, beta]
        merged = caffe_pb2.LayerParameter()
        merged.CopyFrom(bn)
        merged.top[0] = scale.top[0]
        layers[j] = merged
        drop.add(k)
    return (_without(net, layers, drop), weights) if drop else (net, weights)


def fuse_batch_norm(net, weights):
    """Fold each BatchNorm (and a Scale right after it) into the Convolution feeding it.

    A fold happens only when the convolution's top is read by the BatchNorm
    alone (and the BatchNorm's top by the Scale alone), the BatchNorm uses its
    stored statistics, and weights are available. The folded weights are
    computed in float64: ``w * g / sqrt(var + eps)`` and
    ``(b - mean) * g / sqrt(var + eps) + beta``.

    Parameters
    ----------
    net : caffe_pb2.NetParameter
        V2 net; a rewritten copy is returned, ``net`` is left alone.
    weights : dict
        Layer name -> list of arrays; a new dict is returned.

    Returns
    -------
    (caffe_pb2.NetParameter, dict)
    """
    if weights is None:
        return net, weights
    weights = dict(weights)
    layers = list(net.layer)
    drop = set()
    i = 0
    while i < len(layers):
        conv = layers[i]
        if conv.type != "Convolution" or len(conv.top) != 1 or conv.name not in weights:
            i += 1
            continue
        top = conv.top[0]
        j = next((k for k in range(i + 1, len(layers)) if top in layers[k].bottom), None)
        if j is None or layers[j].type != "BatchNorm" or not _only_reader(net, top, i + 1, j):
            i += 1
            continue
        bn = layers[j]
        p = bn.batch_norm_param
        if (p.HasField("use_global_stats") and not p.use_global_stats) or bn.name not in weights:
            i += 1
            continue
        chain = [j]
        k = _channel_scale_after(net, layers, j, weights)
        scale = None
        if k is not None:
            scale = layers[k]
            chain.append(k)
        mean, var = batch_norm_stats(weights[bn.name][:3])
        inv = 1.0 / np.sqrt(var.astype(np.float64) + float(np.float32(p.eps)))
        g = inv
        beta = -mean.astype(np.float64) * inv
        if scale is not None:
            sb = weights[scale.name]
            gamma = sb[0].reshape(-1).astype(np.float64)
            g = inv * gamma
            beta = beta * gamma
            if scale.scale_param.bias_term:
                beta = beta + sb[1].reshape(-1).astype(np.float64)
        cb = weights[conv.name]
        w = cb[0].astype(np.float64)
        b = cb[1].reshape(-1).astype(np.float64) if conv.convolution_param.bias_term else 0.0
        new_w = (w * g.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
        new_b = (b * g + beta).astype(np.float32)
        new_conv = caffe_pb2.LayerParameter()
        new_conv.CopyFrom(conv)
        new_conv.convolution_param.bias_term = True
        last = layers[chain[-1]]
        new_conv.top[0] = last.top[0]
        layers[i] = new_conv
        weights[conv.name] = [new_w, new_b]
        drop.update(chain)
        i += 1
    return (_without(net, layers, drop), weights) if drop else (net, weights)
