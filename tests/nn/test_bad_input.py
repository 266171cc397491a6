"""Bad input to CaffeLayer / CaffeLossBlock / gc.sym: a CaffeError naming the layer, interpreter alive."""

import mxnet as mx
import numpy as np
import pytest

import gluon_caffe as gc
import gluon_caffe.sym as gcsym
from gluon_caffe.nn import CaffeLayer, CaffeLossBlock

IP = 'layer { name: "fc7" type: "InnerProduct" inner_product_param { num_output: 3 } }'


def _ready(block, *shapes):
    block.initialize()
    return [mx.nd.ones(s) for s in shapes]


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])
def test_wrong_number_of_inputs(hybridize):
    block = CaffeLayer('layer { name: "cat" type: "Concat" }', num_data=2)
    a, b, c = _ready(block, (2, 3), (2, 3), (2, 3))
    if hybridize:
        block.hybridize()
    with pytest.raises(gc.CaffeError, match=r"layer 'cat' \(Concat\) takes 2 inputs, got 3"):
        block(a, b, c)
    assert block(a, b).shape == (2, 6)


def test_num_data_the_layer_does_not_accept():
    with pytest.raises(gc.CaffeShapeError, match=r"layer 'fc7' \(InnerProduct\) takes exactly 1 inputs, num_data is 2"):
        CaffeLayer(IP, num_data=2)
    with pytest.raises(gc.CaffeShapeError, match=r"produces exactly 1 outputs, num_out is 2"):
        CaffeLayer(IP, num_out=2)


def test_num_weight_disagreeing_with_caffe():
    with pytest.raises(gc.CaffeShapeError, match=r"layer 'fc7' \(InnerProduct\) has 2 parameter blobs, num_weight is 1"):
        CaffeLayer(IP, num_weight=1)
    with pytest.raises(gc.CaffeShapeError, match="num_weight is 3"):
        gcsym.CaffeOp(mx.sym.Variable("x"), prototxt=IP, num_weight=3)
    assert len(list(CaffeLayer(IP, num_weight=2).collect_params().keys())) == 2


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])
def test_loss_without_label(hybridize):
    loss = CaffeLossBlock('layer { name: "loss" type: "SoftmaxWithLoss" }')
    x, = _ready(loss, (4, 3))
    if hybridize:
        loss.hybridize()
    with pytest.raises(gc.CaffeError, match=r"layer 'loss' \(SoftmaxWithLoss\) takes 2 inputs, got 1"):
        loss(x)
    with pytest.raises(TypeError, match="missing input 'label'"):
        gcsym.CaffeLoss(data=mx.sym.Variable("x"), prototxt='layer { type: "SoftmaxWithLoss" }')


@pytest.mark.parametrize("dtype", ["float16", "int32"])
def test_unsupported_dtype(dtype):
    block = CaffeLayer(IP)
    block.initialize()
    with pytest.raises(gc.CaffeShapeError, match=r"layer 'fc7' \(InnerProduct\): input 0 has dtype %s" % dtype):
        block(mx.nd.ones((2, 4), dtype=dtype))


def test_shape_caffe_refuses():
    block = CaffeLayer('layer { name: "c1" type: "Convolution" convolution_param { num_output: 2 kernel_size: 5 } }')
    block.initialize()
    with pytest.raises(gc.CaffeError, match=r"layer 'c1' \(Convolution\)"):
        block(mx.nd.ones((1, 1, 3, 3)))
    assert block(mx.nd.ones((1, 1, 6, 6))).shape == (1, 2, 2, 2)
    with pytest.raises(gc.CaffeShapeError, match=r"layer 'c1' \(Convolution\): inputs of shapes \[\(1, 3, 6, 6\)\] "
                       r"need weight of shape \(2, 3, 5, 5\), the parameter has \(2, 1, 5, 5\)"):
        block(mx.nd.ones((1, 3, 6, 6)))


def test_mixed_input_dtypes():
    block = CaffeLayer('layer { name: "e" type: "Eltwise" }', num_data=2)
    block.initialize()
    with pytest.raises(gc.CaffeShapeError, match="cast them to one dtype"):
        block(mx.nd.ones((2, 2)), mx.nd.ones((2, 2), dtype="float64"))


def test_bad_prototxt():
    with pytest.raises(gc.CaffeProtoError, match="num_outputx"):
        CaffeLayer('layer { type: "InnerProduct" inner_product_param { num_outputx: 3 } }')
    with pytest.raises(gc.UnsupportedLayerError, match="NoSuchLayer"):
        CaffeLayer('layer { type: "NoSuchLayer" }')


@pytest.mark.parametrize("text", [
    'layer { name: "mnist" type: "Data" data_param { source: "/nonexistent" backend: LMDB batch_size: 4 } }',
    'layer { name: "in" type: "Input" input_param { shape { dim: 1 } } }',
    'layer { name: "d" type: "DummyData" dummy_data_param { shape { dim: 1 } } }',
])
def test_data_layers_are_refused_with_a_pointer(text):
    with pytest.raises(gc.UnsupportedLayerError, match="gluon_caffe.data"):
        CaffeLayer(text)


def test_bad_phase():
    with pytest.raises(ValueError, match="phase"):
        CaffeLayer('layer { type: "Dropout" }', phase="training")


def test_failed_call_leaves_the_block_usable():
    block = CaffeLayer(IP)
    block.initialize()
    with pytest.raises(gc.CaffeError):
        block(mx.nd.ones((2, 4), dtype="float16"))
    y = block(mx.nd.ones((2, 4)))
    assert y.shape == (2, 3) and np.isfinite(y.asnumpy()).all()


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])
def test_gpu_context_with_cpu_only_libcaffe(hybridize):
    """This libcaffe is CPU-only: a block initialized on a GPU context says so, naming the layer.

    (CPU-only MXNet cannot make a GPU array, so the inputs here are on the CPU and the parameters'
    deferred context is what is checked; GPU inputs take the same path.)
    """
    assert gc.caffe_info()["flags"]["CPU_ONLY"]
    conv = 'layer { name: "c1" type: "Convolution" convolution_param { num_output: 2 kernel_size: 1 } }'
    for block, shape in ((CaffeLayer(IP), (2, 4)), (CaffeLayer(conv), (1, 3, 4, 4))):
        block.initialize(ctx=[mx.cpu(), mx.gpu(0)])  # deferred: nothing is allocated on the GPU yet
        if hybridize:
            block.hybridize()
        with pytest.raises(gc.UnsupportedLayerError, match=r"layer '(fc7|c1)' .*weight is on gpu\(0\), but "
                           r"this libcaffe is built CPU-only.*mx\.cpu\(\)"):
            block(mx.nd.zeros(shape))
    # Back on the CPU, the same kind of block works.
    block = CaffeLayer(IP)
    block.initialize(ctx=mx.cpu())
    assert block(mx.nd.ones((2, 4))).shape == (2, 3)


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])
def test_checks_rerun_when_the_inputs_change(hybridize):
    """The input checks are skipped for a repeat of the last call's shapes, never for new ones."""
    block = CaffeLayer(IP)
    block.initialize()
    if hybridize:
        block.hybridize()
    for _ in range(2):
        assert block(mx.nd.ones((2, 4))).shape == (2, 3)
    assert block(mx.nd.ones((5, 4))).shape == (5, 3)  # another batch: fine for InnerProduct
    with pytest.raises(gc.CaffeShapeError, match=r"layer 'fc7' \(InnerProduct\).*weight of shape \(3, 5\).*\(3, 4\)"):
        block(mx.nd.ones((2, 5)))
    with pytest.raises(gc.CaffeShapeError, match="layer 'fc7'.*float16"):
        block(mx.nd.ones((2, 4), dtype="float16"))
    assert block(mx.nd.ones((2, 4))).shape == (2, 3)


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])
def test_checks_rerun_for_the_same_input_when_the_parameters_change(hybridize):
    """The same input array again skips the checks only while the parameters are unchanged too:
    after cast() the dtype mismatch is named, before MXNet reports it on its own terms."""
    block = CaffeLayer(IP)
    block.initialize()
    if hybridize:
        block.hybridize()
    x = mx.nd.ones((2, 4))
    for _ in range(2):
        assert block(x).shape == (2, 3)
    block.cast("float64")
    with pytest.raises(gc.CaffeShapeError, match=r"layer 'fc7' \(InnerProduct\): the inputs are float32, "
                       r"parameter weight is float64.*cast\(\)"):
        block(x)
    assert block(x.astype("float64")).dtype == np.float64


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])
def test_an_array_taking_a_checked_arrays_id_is_still_named(hybridize):
    """The checks go by the arrays' ids; a new array can get a freed one's id and handle. Then
    MXNet's own inference fails first, and the block still says what is wrong in Caffe's terms."""
    block = CaffeLayer(IP)
    block.initialize()
    if hybridize:
        block.hybridize()
    assert block(mx.nd.ones((2, 4))).shape == (2, 3)
    for bad, message in ((mx.nd.ones((2, 5)), r"weight of shape \(3, 5\)"), (mx.nd.ones((2, 4), dtype="float16"), "float16")):
        block._checked = block._seen((bad,))  # as if an earlier array with this id had passed
        with pytest.raises(gc.CaffeShapeError, match=r"layer 'fc7' \(InnerProduct\).*" + message) as err:
            block(bad)
        assert err.value.__cause__ is None and err.value.__suppress_context__
    assert block(mx.nd.ones((2, 4))).shape == (2, 3)
