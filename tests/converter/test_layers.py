"""One test per translator: a one-layer net run in real Caffe (CaffeNet) and converted; every blob compared."""

import numpy as np
import pytest

from helpers import compare, net_text

RNG = np.random.RandomState(42)
X = RNG.randn(2, 3, 8, 8).astype(np.float32)
X_ODD = RNG.randn(2, 4, 7, 9).astype(np.float32)


def _in(shape=(2, 3, 8, 8), name="data", positive=False):
    x = np.random.RandomState(hash(shape) % 1000).randn(*shape).astype(np.float32)
    return {name: np.abs(x) + 0.1 if positive else x}


def check(layers, inputs=None, rtol=1e-5, **kw):
    inputs = inputs or {"data": X}
    text = net_text(layers, [(n, v.shape) for n, v in inputs.items()])
    return compare(text, inputs, rtol=rtol, **kw)


CASES = {
    # --- convolution family
    "conv_basic": 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 4 kernel_size: 3 } }',
    "conv_group_dilation_nobias": 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 6 kernel_size: 3 group: 3 dilation: 2 pad: 2 bias_term: false } }',
    "regression_conv_hw_fields": 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 4 kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 } }',
    "regression_conv_repeated_values": 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 4 kernel_size: 3 kernel_size: 2 stride: 1 stride: 2 pad: 1 pad: 0 } }',
    "deconv": 'layer { name: "d" type: "Deconvolution" bottom: "data" top: "d" convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 } }',
    "regression_deconv_hw_group": 'layer { name: "d" type: "Deconvolution" bottom: "data" top: "d" convolution_param { num_output: 3 group: 3 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 bias_term: false } }',
    "inner_product": 'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 5 } }',
    "inner_product_axis2_transpose": 'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 5 axis: 2 transpose: true } }',
    "inner_product_nobias": 'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 5 bias_term: false } }',
    # --- pooling
    "pool_max": 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }',
    "pool_ave_pad": 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }',
    "regression_pool_clip_rule": 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: AVE kernel_size: 3 stride: 3 pad: 1 } }',
    "regression_pool_clip_rule_max": 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: MAX kernel_size: 3 stride: 3 pad: 1 } }',
    "regression_pool_hw_fields": 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 } }',
    "pool_floor": 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: AVE kernel_size: 2 stride: 2 round_mode: FLOOR } }',
    "pool_global": 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: AVE global_pooling: true } }',
    # --- activations
    "relu": 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }',
    "relu_leaky_inplace": 'layer { name: "r" type: "ReLU" bottom: "data" top: "data" relu_param { negative_slope: 0.1 } } layer { name: "a" type: "AbsVal" bottom: "data" top: "a" }',
    "prelu": 'layer { name: "pr" type: "PReLU" bottom: "data" top: "pr" }',
    "regression_prelu_channel_shared": 'layer { name: "pr" type: "PReLU" bottom: "data" top: "pr" prelu_param { channel_shared: true } }',
    "elu": 'layer { name: "e" type: "ELU" bottom: "data" top: "e" elu_param { alpha: 0.7 } }',
    "sigmoid": 'layer { name: "s" type: "Sigmoid" bottom: "data" top: "s" }',
    "tanh": 'layer { name: "t" type: "TanH" bottom: "data" top: "t" }',
    "absval": 'layer { name: "a" type: "AbsVal" bottom: "data" top: "a" }',
    "bnll": 'layer { name: "b" type: "BNLL" bottom: "data" top: "b" }',
    "regression_power": 'layer { name: "p" type: "Power" bottom: "data" top: "p" power_param { power: 2 scale: 0.5 shift: 1 } }',
    "power_constant": 'layer { name: "p" type: "Power" bottom: "data" top: "p" power_param { power: 3 scale: 0 shift: 2 } }',
    "exp_base": 'layer { name: "e" type: "Exp" bottom: "data" top: "e" exp_param { base: 2 scale: 0.5 shift: 0.3 } }',
    "exp_e": 'layer { name: "e" type: "Exp" bottom: "data" top: "e" }',
    "threshold": 'layer { name: "t" type: "Threshold" bottom: "data" top: "t" threshold_param { threshold: 0.2 } }',
    "clip": 'layer { name: "c" type: "Clip" bottom: "data" top: "c" clip_param { min: -0.5 max: 0.7 } }',
    "swish": 'layer { name: "s" type: "Swish" bottom: "data" top: "s" swish_param { beta: 1.5 } }',
    "dropout": 'layer { name: "d" type: "Dropout" bottom: "data" top: "d" dropout_param { dropout_ratio: 0.3 } }',
    # --- normalisation
    "regression_lrn_across": 'layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }',
    "regression_lrn_within_channel": 'layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL } }',
    "batchnorm": 'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" batch_norm_param { eps: 0.001 } }',
    "batchnorm_tiny_eps_inplace": 'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" batch_norm_param { eps: 1e-9 } }',
    "batchnorm_batch_stats": 'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" batch_norm_param { use_global_stats: false } }',
    "regression_scale_standalone": 'layer { name: "s" type: "Scale" bottom: "data" top: "s" }',
    "regression_scale_bias_term_false": 'layer { name: "s" type: "Scale" bottom: "data" top: "s" scale_param { bias_term: false axis: 2 num_axes: 2 } }',
    "scale_bias": 'layer { name: "s" type: "Scale" bottom: "data" top: "s" scale_param { bias_term: true } }',
    "scale_scalar": 'layer { name: "s" type: "Scale" bottom: "data" top: "s" scale_param { num_axes: 0 } }',
    "regression_bias": 'layer { name: "b" type: "Bias" bottom: "data" top: "b" bias_param { axis: 1 num_axes: -1 } }',
    "mvn": 'layer { name: "m" type: "MVN" bottom: "data" top: "m" }',
    "mvn_across_nonorm": 'layer { name: "m" type: "MVN" bottom: "data" top: "m" mvn_param { across_channels: true normalize_variance: false } }',
    "regression_softmax_4d_axis1": 'layer { name: "s" type: "Softmax" bottom: "data" top: "s" }',
    "regression_softmax_axis": 'layer { name: "s" type: "Softmax" bottom: "data" top: "s" softmax_param { axis: -1 } }',
    # --- eltwise and shapes
    "regression_eltwise_prod": 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" } layer { name: "e" type: "Eltwise" bottom: "data" bottom: "r" top: "e" eltwise_param { operation: PROD } }',
    "regression_eltwise_max": 'layer { name: "r" type: "TanH" bottom: "data" top: "r" } layer { name: "e" type: "Eltwise" bottom: "data" bottom: "r" top: "e" eltwise_param { operation: MAX } }',
    "eltwise_sum_coeff": 'layer { name: "r" type: "TanH" bottom: "data" top: "r" } layer { name: "e" type: "Eltwise" bottom: "data" bottom: "r" bottom: "data" top: "e" eltwise_param { operation: SUM coeff: 0.5 coeff: -2 coeff: 1 } }',
    "concat": 'layer { name: "r" type: "TanH" bottom: "data" top: "r" } layer { name: "c" type: "Concat" bottom: "data" bottom: "r" top: "c" concat_param { axis: 2 } }',
    "regression_slice": 'layer { name: "s" type: "Slice" bottom: "data" top: "a" top: "b" top: "c" slice_param { axis: 3 slice_point: 2 slice_point: 5 } }',
    "slice_equal": 'layer { name: "s" type: "Slice" bottom: "data" top: "a" top: "b" slice_param { axis: 2 } }',
    "split": 'layer { name: "s" type: "Split" bottom: "data" top: "a" top: "b" } layer { name: "r" type: "ReLU" bottom: "a" top: "r" }',
    "flatten": 'layer { name: "f" type: "Flatten" bottom: "data" top: "f" }',
    "flatten_axis_end": 'layer { name: "f" type: "Flatten" bottom: "data" top: "f" flatten_param { axis: 1 end_axis: 2 } }',
    "regression_reshape": 'layer { name: "r" type: "Reshape" bottom: "data" top: "r" reshape_param { shape { dim: 0 dim: -1 dim: 4 } } }',
    "regression_reshape_axis_num_axes": 'layer { name: "r" type: "Reshape" bottom: "data" top: "r" reshape_param { shape { dim: 2 dim: 4 } axis: 2 num_axes: 1 } }',
    "reshape_negative_axis": 'layer { name: "r" type: "Reshape" bottom: "data" top: "r" reshape_param { shape { dim: 0 dim: 1 } axis: -2 } }',
    "tile": 'layer { name: "t" type: "Tile" bottom: "data" top: "t" tile_param { axis: 2 tiles: 3 } }',
    "reduction_sum": 'layer { name: "r" type: "Reduction" bottom: "data" top: "r" reduction_param { axis: 1 } }',
    "reduction_asum": 'layer { name: "r" type: "Reduction" bottom: "data" top: "r" reduction_param { operation: ASUM axis: 2 coeff: 0.5 } }',
    "reduction_sumsq": 'layer { name: "r" type: "Reduction" bottom: "data" top: "r" reduction_param { operation: SUMSQ axis: -1 } }',
    "reduction_mean": 'layer { name: "r" type: "Reduction" bottom: "data" top: "r" reduction_param { operation: MEAN axis: 1 } }',
    "argmax": 'layer { name: "a" type: "ArgMax" bottom: "data" top: "a" argmax_param { top_k: 3 } }',
    "argmax_out_max_val": 'layer { name: "a" type: "ArgMax" bottom: "data" top: "a" argmax_param { top_k: 2 out_max_val: true } }',
    "argmax_axis": 'layer { name: "a" type: "ArgMax" bottom: "data" top: "a" argmax_param { axis: 1 } }',
    "silence": 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" } layer { name: "t" type: "TanH" bottom: "data" top: "t" } layer { name: "s" type: "Silence" bottom: "t" }',
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_translator_matches_caffe(case, tmp_path):
    positive = case.startswith("exp") or case == "regression_power"
    inputs = {"data": (np.abs(X) + 0.1) if positive else X}
    if "pool" in case or case == "regression_conv_hw_fields":
        inputs = {"data": X_ODD}
    check(CASES[case], inputs, tmpdir=str(tmp_path))


def test_log_layer(tmp_path):
    check('layer { name: "l" type: "Log" bottom: "data" top: "l" log_param { base: 10 scale: 2 shift: 1 } }',
          {"data": np.abs(X) + 0.1}, tmpdir=str(tmp_path))
    check('layer { name: "l" type: "Log" bottom: "data" top: "l" }', {"data": np.abs(X) + 0.1}, tmpdir=str(tmp_path))


def test_regression_crop_axis_offset(tmp_path):
    ref = np.zeros((2, 3, 5, 4), np.float32)
    check('layer { name: "c" type: "Crop" bottom: "data" bottom: "ref" top: "c" crop_param { axis: 2 offset: 1 offset: 3 } }',
          {"data": X, "ref": ref}, tmpdir=str(tmp_path))
    ref1 = np.zeros((2, 2, 5, 4), np.float32)
    check('layer { name: "c" type: "Crop" bottom: "data" bottom: "ref" top: "c" crop_param { axis: 1 offset: 1 } }',
          {"data": X, "ref": ref1}, tmpdir=str(tmp_path))


def test_scale_two_bottoms(tmp_path):
    s = np.random.RandomState(3).randn(2, 3).astype(np.float32)
    check('layer { name: "s" type: "Scale" bottom: "data" bottom: "s" top: "o" scale_param { axis: 0 bias_term: true } }',
          {"data": X, "s": s}, tmpdir=str(tmp_path))
    b = np.random.RandomState(4).randn(3, 8).astype(np.float32)
    check('layer { name: "b" type: "Bias" bottom: "data" bottom: "b" top: "o" }', {"data": X, "b": b},
          tmpdir=str(tmp_path))


def test_embed(tmp_path):
    idx = np.random.RandomState(5).randint(0, 10, size=(4, 3)).astype(np.float32)
    check('layer { name: "e" type: "Embed" bottom: "data" top: "e" embed_param { num_output: 6 input_dim: 10 } }',
          {"data": idx}, tmpdir=str(tmp_path))
