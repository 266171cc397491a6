"""CaffeLayer and CaffeLossBlock against a CaffeNet running the same layer: forward, all gradients, state."""

import numpy as np
import pytest

from tests.nn._harness import run_block_and_net

N = "normal"
G = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "uniform" min: -1 max: 1 }'

# (id, layer body, [(input shape, kind)], number of outputs, options)
LAYERS = [
    ("innerproduct", 'type: "InnerProduct" inner_product_param { num_output: 7 %s }' % G,
     [((4, 3, 2, 5), N)], 1, {}),
    ("innerproduct_axis2_transpose", 'type: "InnerProduct" inner_product_param { num_output: 6 axis: 2 '
     'transpose: true weight_filler { type: "xavier" } bias_filler { type: "gaussian" std: 1 } }',
     [((2, 3, 4, 5), N)], 1, {}),
    ("convolution_group_stride_pad", 'type: "Convolution" convolution_param { num_output: 6 kernel_size: 3 '
     'pad: 1 stride: 2 group: 2 %s }' % G, [((2, 4, 9, 8), N)], 1, {}),
    ("convolution_hw_dilation", 'type: "Convolution" convolution_param { num_output: 3 kernel_h: 3 kernel_w: 2 '
     'pad_h: 2 pad_w: 0 stride_h: 1 stride_w: 2 dilation: 2 weight_filler { type: "msra" } '
     'bias_filler { type: "gaussian" std: 1 } }', [((2, 2, 10, 9), N)], 1, {}),
    ("deconvolution", 'type: "Deconvolution" convolution_param { num_output: 4 kernel_size: 4 stride: 2 '
     'pad: 1 group: 2 %s }' % G, [((2, 2, 5, 4), N)], 1, {}),
    ("pooling_max_ceil", 'type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 }',
     [((2, 3, 8, 7), N)], 1, {}),
    ("pooling_ave_pad", 'type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }',
     [((2, 3, 7, 7), N)], 1, {}),
    ("pooling_global", 'type: "Pooling" pooling_param { pool: MAX global_pooling: true }',
     [((2, 3, 5, 4), N)], 1, {}),
    ("relu", 'type: "ReLU"', [((3, 4, 5), N)], 1, {}),
    ("relu_leaky", 'type: "ReLU" relu_param { negative_slope: 0.1 }', [((3, 4, 5), N)], 1, {}),
    ("prelu", 'type: "PReLU" prelu_param { filler { type: "uniform" min: 0.1 max: 0.4 } }',
     [((2, 3, 4, 4), N)], 1, {}),
    ("prelu_channel_shared", 'type: "PReLU" prelu_param { channel_shared: true '
     'filler { type: "constant" value: 0.3 } }', [((2, 3, 4, 4), N)], 1, {}),
    ("elu", 'type: "ELU" elu_param { alpha: 0.7 }', [((3, 4, 5), N)], 1, {}),
    ("tanh", 'type: "TanH"', [((3, 4, 5), N)], 1, {}),
    ("sigmoid", 'type: "Sigmoid"', [((3, 4, 5), N)], 1, {}),
    ("absval", 'type: "AbsVal"', [((3, 4, 5), N)], 1, {}),
    ("power", 'type: "Power" power_param { power: 1.5 scale: 0.7 shift: 0.2 }', [((3, 4, 5), "positive")], 1, {}),
    ("lrn_across", 'type: "LRN" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 }', [((2, 5, 4, 4), N)], 1, {}),
    ("lrn_within", 'type: "LRN" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL }',
     [((2, 3, 5, 5), N)], 1, {}),
    ("batchnorm_test", 'type: "BatchNorm"', [((4, 3, 2, 2), N)], 1, {}),
    ("batchnorm_train", 'type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.9 }',
     [((4, 3, 2, 2), N)], 1, {"phase": "train"}),
    ("scale_bias", 'type: "Scale" scale_param { bias_term: true filler { type: "uniform" min: 0.5 max: 2 } '
     'bias_filler { type: "gaussian" std: 1 } }', [((2, 3, 4, 4), N)], 1, {}),
    ("scale_two_inputs", 'type: "Scale" scale_param { axis: 1 }', [((2, 3, 4, 4), N), ((3, 4), N)], 1, {}),
    ("bias", 'type: "Bias" bias_param { filler { type: "gaussian" std: 1 } }', [((2, 3, 4), N)], 1, {}),
    ("eltwise_sum", 'type: "Eltwise" eltwise_param { operation: SUM coeff: 0.5 coeff: -2 }',
     [((2, 3, 4), N), ((2, 3, 4), N)], 1, {}),
    ("eltwise_prod", 'type: "Eltwise" eltwise_param { operation: PROD }', [((2, 3, 4), N), ((2, 3, 4), N)], 1, {}),
    ("eltwise_max", 'type: "Eltwise" eltwise_param { operation: MAX }',
     [((2, 3, 4), N), ((2, 3, 4), N), ((2, 3, 4), N)], 1, {}),
    ("concat", 'type: "Concat" concat_param { axis: 1 }', [((2, 3, 4), N), ((2, 5, 4), N)], 1, {}),
    ("slice", 'type: "Slice" slice_param { axis: 1 slice_point: 3 }', [((2, 7, 4), N)], 2, {}),
    ("split", 'type: "Split"', [((2, 3, 4), N)], 2, {}),
    ("flatten", 'type: "Flatten"', [((2, 3, 4, 5), N)], 1, {}),
    ("reshape", 'type: "Reshape" reshape_param { shape { dim: 0 dim: -1 dim: 2 } }', [((2, 3, 4, 5), N)], 1, {}),
    ("crop", 'type: "Crop" crop_param { axis: 2 offset: 1 offset: 2 }', [((2, 3, 8, 9), N), ((2, 3, 5, 4), N)], 1,
     {"zero_grads": (1,)}),
    ("softmax", 'type: "Softmax"', [((3, 5, 2, 2), N)], 1, {}),
    ("softmax_axis", 'type: "Softmax" softmax_param { axis: 2 }', [((3, 5, 4), N)], 1, {}),
    ("embed", 'type: "Embed" embed_param { num_output: 4 input_dim: 6 %s }' % G,
     [((5,), "index:6")], 1, {"nograd": (0,), "force_backward": False, "check_params": False}),
    ("dropout_test", 'type: "Dropout" dropout_param { dropout_ratio: 0.4 }', [((3, 4, 5), N)], 1, {}),
    ("tile", 'type: "Tile" tile_param { axis: 1 tiles: 3 }', [((2, 3, 4), N)], 1, {}),
    ("reduction_sumsq", 'type: "Reduction" reduction_param { operation: SUMSQ axis: 1 coeff: 0.5 }',
     [((2, 3, 4), N)], 1, {}),
    ("reduction_scalar", 'type: "Reduction" reduction_param { operation: ASUM axis: 0 }', [((2, 3), N)], 1, {}),
    ("mvn", 'type: "MVN" mvn_param { normalize_variance: true across_channels: false }',
     [((2, 3, 4, 5), N)], 1, {}),
]

LOSSES = [
    ("softmaxwithloss", 'type: "SoftmaxWithLoss"', [((6, 5), N), ((6,), "labels:5")], 1, {}),
    ("softmaxwithloss_ignore_valid", 'type: "SoftmaxWithLoss" loss_param { ignore_label: 2 normalization: VALID }',
     [((6, 5, 2, 3), N), ((6, 2, 3), "labels:5")], 1, {}),
    ("softmaxwithloss_batch_size", 'type: "SoftmaxWithLoss" loss_param { normalization: BATCH_SIZE }',
     [((4, 3, 2), N), ((4, 2), "labels:3")], 1, {}),
    ("softmaxwithloss_none", 'type: "SoftmaxWithLoss" loss_param { ignore_label: 1 normalization: NONE }',
     [((4, 3), N), ((4,), "labels:3")], 1, {}),
    ("softmaxwithloss_loss_weight", 'type: "SoftmaxWithLoss" loss_weight: 2.5', [((4, 3), N), ((4,), "labels:3")],
     1, {"loss_weight": 2.5}),
    ("euclidean", 'type: "EuclideanLoss"', [((4, 3, 2), N), ((4, 3, 2), N)], 1, {}),
    ("sigmoid_cross_entropy", 'type: "SigmoidCrossEntropyLoss"', [((4, 3), N), ((4, 3), "unit")], 1, {}),
    ("contrastive", 'type: "ContrastiveLoss" contrastive_loss_param { margin: 2 }',
     [((6, 3, 1, 1), N), ((6, 3, 1, 1), N), ((6, 1, 1, 1), "binary")], 1, {}),
    ("multinomial_logistic", 'type: "MultinomialLogisticLoss"', [((5, 4), "prob"), ((5,), "labels:4")], 1, {}),
]


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_matches_caffenet(case, dtype, hybridize):
    _, body, inputs, num_out, opts = case
    run_block_and_net(body, inputs, num_out, dtype=dtype, hybridize=hybridize, **opts)


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", LOSSES, ids=[c[0] for c in LOSSES])
def test_loss_matches_caffenet(case, dtype, hybridize):
    _, body, inputs, num_out, opts = case
    # Which inputs Caffe refuses gradients for: labels (and InfogainLoss's matrix).
    nograd = {"softmaxwithloss": (1,), "sigmoid_cross_entropy": (1,), "hinge": (1,), "contrastive": (2,),
              "multinomial_logistic": (1,), "infogain": (1, 2)}
    key = next((k for k in nograd if case[0].startswith(k)), None)
    grad_scale = 0.5 if hybridize else 1.0
    run_block_and_net(body, inputs, num_out, dtype=dtype, hybridize=hybridize, loss=True,
                      grad_scale=grad_scale, nograd=nograd.get(key, ()), **opts)
