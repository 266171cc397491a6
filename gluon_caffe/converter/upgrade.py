"""Upgrade V0/V1 nets to V2 once, up front, and filter layers by phase, so translators see only V2."""

from ..errors import CaffeProtoError, layer_context
from .proto import caffe_pb2

__all__ = ["upgrade_net", "filter_phase", "net_needs_upgrade", "V1_TYPE_NAMES"]

# V1LayerParameter.LayerType -> V2 type string (Caffe's UpgradeV1LayerType).
V1_TYPE_NAMES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

# V0 type strings -> V1 enum names (Caffe's UpgradeV0LayerType).
_V0_TYPES = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION",
    "data": "DATA", "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN", "hdf5_data": "HDF5_DATA", "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL", "images": "IMAGE_DATA", "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT", "lrn": "LRN", "multinomial_logistic_loss":
    "MULTINOMIAL_LOGISTIC_LOSS", "pool": "POOLING", "relu": "RELU", "sigmoid": "SIGMOID",
    "softmax": "SOFTMAX", "softmax_loss": "SOFTMAX_LOSS", "split": "SPLIT", "tanh": "TANH",
    "window_data": "WINDOW_DATA",
}


def net_needs_upgrade(net):
    """True when ``net`` uses any V0/V1 construct (``layers``, ``input_dim``, ...)."""
    return bool(len(net.layers) or len(net.input) or len(net.input_dim) or len(net.input_shape))


def _v0_to_v1(v1):
    """Fold a V0 ``layers { layer { ... } }`` entry into its V1 container, in place."""
    v0 = v1.layer
    ctx = layer_context(v0.name, v0.type)
    if v0.HasField("name"):
        v1.name = v0.name
    t = _V0_TYPES.get(v0.type)
    if t is None:
        raise CaffeProtoError("%s: unknown V0 layer type %r" % (ctx, v0.type))
    v1.type = caffe_pb2.V1LayerParameter.LayerType.Value(t)
    v1.blobs.extend(v0.blobs)
    v1.blobs_lr.extend(v0.blobs_lr)
    v1.weight_decay.extend(v0.weight_decay)
    if t in ("CONVOLUTION", "INNER_PRODUCT"):
        p = v1.convolution_param if t == "CONVOLUTION" else v1.inner_product_param
        if v0.HasField("num_output"):
            p.num_output = v0.num_output
        if v0.HasField("biasterm"):
            p.bias_term = v0.biasterm
        if v0.HasField("weight_filler"):
            p.weight_filler.CopyFrom(v0.weight_filler)
        if v0.HasField("bias_filler"):
            p.bias_filler.CopyFrom(v0.bias_filler)
        if t == "CONVOLUTION":
            if v0.HasField("pad"):
                p.pad.append(v0.pad)
            if v0.HasField("kernelsize"):
                p.kernel_size.append(v0.kernelsize)
            if v0.HasField("group"):
                p.group = v0.group
            if v0.HasField("stride"):
                p.stride.append(v0.stride)
    elif t == "POOLING":
        p = v1.pooling_param
        if v0.HasField("pool"):
            p.pool = v0.pool
        if v0.HasField("kernelsize"):
            p.kernel_size = v0.kernelsize
        if v0.HasField("stride"):
            p.stride = v0.stride
        if v0.HasField("pad"):
            p.pad = v0.pad
    elif t == "DROPOUT":
        if v0.HasField("dropout_ratio"):
            v1.dropout_param.dropout_ratio = v0.dropout_ratio
    elif t == "LRN":
        p = v1.lrn_param
        for f in ("local_size", "alpha", "beta", "k"):
            if v0.HasField(f):
                setattr(p, f, getattr(v0, f))
    elif t == "CONCAT":
        if v0.HasField("concat_dim"):
            v1.concat_param.concat_dim = v0.concat_dim
    v1.ClearField("layer")


def _merge_v0_padding(net):
    """Fold V0 ``padding`` layers into the conv/pool layer that consumes them (UpgradeV0PaddingLayers)."""
    pads = {}
    kept = []
    for l in net.layers:
        if l.HasField("layer") and l.layer.type == "padding":
            if len(l.bottom) != 1 or len(l.top) != 1:
                raise CaffeProtoError("%s: V0 padding layer needs one bottom and one top"
                                      % layer_context(l.layer.name, "padding"))
            pads[l.top[0]] = (l.bottom[0], l.layer.pad)
            continue
        kept.append(l)
    if not pads:
        return
    for l in kept:
        for i, b in enumerate(l.bottom):
            if b in pads:
                src, pad = pads[b]
                if l.HasField("layer") and l.layer.type in ("conv", "pool"):
                    l.layer.pad = pad
                    l.bottom[i] = src
                else:
                    raise CaffeProtoError("%s: V0 padding feeds a layer that is not conv/pool"
                                          % layer_context(l.layer.name, l.layer.type))
    del net.layers[:]
    net.layers.extend(kept)


def _v1_to_v2(v1, out):
    """Copy one V1LayerParameter into a V2 LayerParameter ``out``."""
    tname = caffe_pb2.V1LayerParameter.LayerType.Name(v1.type)
    out.name = v1.name
    out.type = V1_TYPE_NAMES.get(tname, tname)
    out.bottom.extend(v1.bottom)
    out.top.extend(v1.top)
    out.include.extend(v1.include)
    out.exclude.extend(v1.exclude)
    out.loss_weight.extend(v1.loss_weight)
    out.blobs.extend(v1.blobs)
    n_specs = max(len(v1.param), len(v1.blobs_lr), len(v1.weight_decay), len(v1.blob_share_mode))
    for i in range(n_specs):
        spec = out.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    v2_fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    for fd, value in v1.ListFields():
        if fd.name.endswith("_param") and fd.name in v2_fields:
            getattr(out, fd.name).CopyFrom(value)


def _upgrade_inputs(net):
    """Turn ``input:``/``input_dim:``/``input_shape`` into one Input layer at the front (UpgradeNetInput)."""
    if not len(net.input):
        if len(net.input_dim) or len(net.input_shape):
            raise CaffeProtoError("net has input_dim/input_shape but no input names")
        return
    names = list(net.input)
    layer = caffe_pb2.LayerParameter(name="input", type="Input")
    layer.top.extend(names)
    if len(net.input_shape):
        if len(net.input_shape) != len(names):
            raise CaffeProtoError("net has %d inputs but %d input_shape entries"
                                  % (len(names), len(net.input_shape)))
        for s in net.input_shape:
            layer.input_param.shape.add().CopyFrom(s)
    elif len(net.input_dim):
        if len(net.input_dim) != 4 * len(names):
            raise CaffeProtoError("net has %d inputs but %d input_dim values (need 4 per input)"
                                  % (len(names), len(net.input_dim)))
        for i in range(len(names)):
            layer.input_param.shape.add().dim.extend(net.input_dim[4 * i:4 * i + 4])
    existing = list(net.layer)
    del net.layer[:]
    net.layer.add().CopyFrom(layer)
    net.layer.extend(existing)
    net.ClearField("input")
    net.ClearField("input_dim")
    net.ClearField("input_shape")


def upgrade_net(net):
    """Upgrade a parsed NetParameter to V2 in place and return it.

    Handles V0 (``layers { layer { type: "conv" } }`` with padding layers),
    V1 (``layers { type: CONVOLUTION }``) and legacy inputs (``input:``,
    ``input_dim:``, ``input_shape``). A net mixing ``layer`` and ``layers``
    is rejected, like Caffe does.
    """
    if len(net.layers):
        if len(net.layer):
            raise CaffeProtoError("net mixes V1 'layers' and V2 'layer' fields; use one")
        if any(l.HasField("layer") for l in net.layers):
            _merge_v0_padding(net)
            for l in net.layers:
                if l.HasField("layer"):
                    _v0_to_v1(l)
        for v1 in net.layers:
            _v1_to_v2(v1, net.layer.add())
        net.ClearField("layers")
    _upgrade_inputs(net)
    return net


def _rule_matches(rule, state):
    """Caffe's StateMeetsRule: every condition in ``rule`` holds for ``state``."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def filter_phase(net, phase="test", level=0, stages=()):
    """Keep the layers that Caffe's FilterNet keeps for a phase, in place; return ``net``.

    A layer with ``include`` rules is kept when any rule matches; otherwise it
    is kept unless an ``exclude`` rule matches. A layer's own ``phase`` field
    does not matter here, as in Caffe.
    """
    if isinstance(phase, str):
        phase = {"train": caffe_pb2.TRAIN, "test": caffe_pb2.TEST}[phase.lower()]
    state = caffe_pb2.NetState(phase=phase, level=level)
    state.stage.extend(stages)
    kept = []
    for l in net.layer:
        if len(l.include) and len(l.exclude):
            raise CaffeProtoError("%s: specify either include or exclude rules, not both"
                                  % layer_context(l.name, l.type))
        if len(l.include):
            keep = any(_rule_matches(r, state) for r in l.include)
        else:
            keep = not any(_rule_matches(r, state) for r in l.exclude)
        if keep:
            kept.append(l)
    if len(kept) != len(net.layer):
        snapshot = [caffe_pb2.LayerParameter() for _ in kept]
        for dst, src in zip(snapshot, kept):
            dst.CopyFrom(src)
        del net.layer[:]
        net.layer.extend(snapshot)
    return net
