"""Numpy references that follow Caffe's CPU layer code line by line (for tests that run without libcaffe)."""

import math

import numpy as np


def pool_out_size(size, k, s, p, ceil_mode=True):
    f = math.ceil if ceil_mode else math.floor
    out = int(f(float(size + 2 * p - k) / s)) + 1
    if p and (out - 1) * s >= size + p:  # Caffe's clip rule
        out -= 1
    return out


def pooling(x, kernel, stride, pad, method="MAX", ceil_mode=True, global_pooling=False):
    """PoolingLayer::Forward_cpu (MAX and AVE) for NCHW float32 ``x``."""
    n, c, h, w = x.shape
    if global_pooling:
        kernel = (h, w)
    kh, kw = kernel
    sh, sw = stride
    ph, pw = pad
    oh = pool_out_size(h, kh, sh, ph, ceil_mode)
    ow = pool_out_size(w, kw, sw, pw, ceil_mode)
    out = np.zeros((n, c, oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            if method == "MAX":
                he, we = min(hs + kh, h), min(ws + kw, w)
                hs, ws = max(hs, 0), max(ws, 0)
                out[:, :, i, j] = x[:, :, hs:he, ws:we].max(axis=(2, 3))
            else:
                he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
                size = (he - hs) * (we - ws)
                hs, ws = max(hs, 0), max(ws, 0)
                he, we = min(he, h), min(we, w)
                out[:, :, i, j] = x[:, :, hs:he, ws:we].sum(axis=(2, 3), dtype=np.float32) / np.float32(size)
    return out
