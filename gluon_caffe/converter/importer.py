"""Caffe prototxt + caffemodel -> MXNet Symbol + params (convert) -> Gluon SymbolBlock (import_model)."""

import ctypes
import os

import mxnet as mx
import numpy as np

from .._files import atomic_outputs
from .._ndarray import new_cpu_ndarray as _new_cpu_ndarray
from ..errors import (CaffeError, CaffeShapeError, ConversionError, UnsupportedLayerError,
                      layer_context)
from . import fallback as _fallback
from .context import PLACEHOLDER, ConvertContext
from .mean import mean_to_array
from .passes import fuse_batch_norm, merge_scale_into_batch_norm
from .proto import read_prototxt
from .registry import DATA_TYPES, DROPPED_TYPES, get_translator
from .upgrade import filter_phase, upgrade_net
from .weights import read_weights

__all__ = ["convert", "import_model", "convert_net", "ConvertedNet"]

# Layers that commute with reversing the channel axis and hold no per-channel parameters.
_FLIP_EQUIVARIANT = frozenset([
    "ReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log", "Threshold",
    "Clip", "Swish", "Dropout", "Split", "Pooling", "LRN", "MVN", "Softmax",
])

# Layers whose every top has the shape of their bottoms (all equal) in Caffe: their tops' shapes
# are not inferred again (a ResNet is three quarters BatchNorm, Scale, ReLU and Eltwise).
_SAME_SHAPE = frozenset([
    "ReLU", "PReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log", "Threshold",
    "Clip", "Swish", "Dropout", "Split", "LRN", "MVN", "Softmax", "BatchNorm", "Scale", "Bias",
    "Eltwise",
])


# Layers whose translators give their tops' shapes (Translation.shapes) by Caffe's own rules.
_SHAPE_BY_TRANSLATOR = frozenset(["Convolution", "Deconvolution", "InnerProduct", "Pooling"])


class ConvertedNet(object):
    """A converted net: the symbol, its parameters and how Caffe's blobs map onto it.

    Attributes
    ----------
    symbol : mxnet.symbol.Symbol
        One output per Caffe output blob, in ``output_names`` order.
    arg_params, aux_params : dict of str to mxnet.nd.NDArray
    input_names : list of str
        Caffe input blobs, in prototxt order (the symbol's data arguments).
    input_shapes : dict of str to tuple
        Shapes the prototxt (or ``input_shapes=``) gave for the inputs.
    output_names : list of str
        Caffe blobs that are net outputs, sorted by name as Caffe does.
    blobs : dict of str to mxnet.symbol.Symbol
        Every Caffe blob name -> the symbol holding its latest value.
    fixed_input_size : list of str
        Layers that made the graph valid for ``input_shapes`` only (batch aside):
        PriorBox layers of an inference graph, whose priors are constants.
    blob_shapes : dict of str to tuple
        Caffe blob name -> its shape at the input shapes, where known while converting.
    """

    def __init__(self, symbol, arg_params, aux_params, input_names, input_shapes, output_names, blobs,
                 fixed_input_size=(), blob_shapes=None):
        self.fixed_input_size = list(fixed_input_size)
        self.blob_shapes = dict(blob_shapes or {})
        self.symbol = symbol
        self.arg_params = arg_params
        self.aux_params = aux_params
        self.input_names = input_names
        self.input_shapes = input_shapes
        self.output_names = output_names
        self.blobs = blobs


def _splice(ctx, outputs, bottoms):
    """``outputs`` (built on placeholder bottoms) joined to the real ``bottoms`` {placeholder: symbol},
    with their inferred shapes (None where unknown)."""
    shapes = ctx.shapes(mx.sym.Group(outputs))
    joined = list(outputs)
    ops = []
    for i, out in enumerate(outputs):
        if out.get_children() is None and out.name in bottoms:
            joined[i] = bottoms[out.name]  # the layer passes a bottom through (Split, Dropout...)
        else:
            ops.append(i)
    if ops:
        group = mx.sym.Group([outputs[i] for i in ops])
        used = set(group.list_arguments())
        if any(h in used for h in bottoms):
            group = group(**{h: s for h, s in bottoms.items() if h in used})
        for k, i in enumerate(ops):
            joined[i] = group[k]
    return joined, shapes


def _input_shapes_of(layer):
    """Shapes declared by an Input (or data) layer for each of its tops (None where unknown)."""
    tops = list(layer.top)
    if layer.type == "Input":
        shapes = [tuple(int(d) for d in s.dim) for s in layer.input_param.shape]
        if len(shapes) == 1:
            return shapes * len(tops)
        if len(shapes) not in (0, len(tops)):
            raise ConversionError("%s: input_param has %d shapes for %d tops"
                                  % (layer_context(layer.name, layer.type), len(shapes), len(tops)))
        return shapes or [None] * len(tops)
    if layer.type == "DummyData" and len(layer.dummy_data_param.shape):
        shapes = [tuple(int(d) for d in s.dim) for s in layer.dummy_data_param.shape]
        return (shapes * len(tops))[:len(tops)] if len(shapes) == 1 else shapes
    if layer.type == "MemoryData":
        p = layer.memory_data_param
        return [(p.batch_size, p.channels, p.height, p.width)] + [(p.batch_size,)] * (len(tops) - 1)
    return [None] * len(tops)


def _flip_blobs(layer, blobs, in_shape):
    """Caffe blobs of ``layer`` permuted for a channel-reversed input, or None if it cannot be done."""
    t = layer.type
    rev = lambda a, ax: np.ascontiguousarray(np.flip(a, axis=ax))  # noqa: E731
    if t == "BatchNorm":  # mean, variance, factor (and gamma, beta once a Scale is merged in)
        return [rev(b, 0) if i != 2 else b for i, b in enumerate(blobs)]
    if t in ("Scale", "Bias"):
        p = layer.scale_param if t == "Scale" else layer.bias_param
        if p.axis not in (1, -3) or blobs[0].ndim == 0 or blobs[0].size == 1:
            return None if blobs[0].size != 1 else list(blobs)
        return [rev(b, 0) for b in blobs]
    if t == "PReLU":
        return list(blobs) if layer.prelu_param.channel_shared else [rev(blobs[0], 0)]
    if t == "Normalize":
        return list(blobs) if layer.norm_param.channel_shared else [rev(blobs[0], 0)]
    if t == "Convolution" and layer.convolution_param.group == 1:
        return [rev(blobs[0], 1)] + list(blobs[1:])
    if t == "Deconvolution" and layer.convolution_param.group == 1:
        return [rev(blobs[0], 0)] + list(blobs[1:])
    if t == "InnerProduct" and layer.inner_product_param.axis == 1 and in_shape is not None:
        c = in_shape[1]
        w = blobs[0]
        if layer.inner_product_param.transpose:
            return [rev(w.reshape((c, -1, w.shape[-1])), 0).reshape(w.shape)] + list(blobs[1:])
        return [rev(w.reshape((w.shape[0], c, -1)), 1).reshape(w.shape)] + list(blobs[1:])
    return None


def convert_net(net, weights=None, mean=None, rgb=False, fuse=False, fallback=True, input_shapes=None,
                inference=False):
    """Translate an upgraded, phase-filtered V2 ``NetParameter`` (see :func:`convert`).

    With ``inference=True`` translators may emit constants instead of values computed from
    parameters (a PReLU's convolution weights), for a graph that is never trained.

    Returns
    -------
    ConvertedNet
    """
    # A mapped caffemodel's (the passes below copy the dict into a plain one).
    release = getattr(weights, "release", None)
    from_file = getattr(weights, "ndarrays", None)
    if fuse:
        net, weights = fuse_batch_norm(net, weights)
    net, weights = merge_scale_into_batch_norm(net, weights)
    ctx = ConvertContext(weights, {}, inference=inference)
    blobs, producer, available = {}, {}, set()
    shapes = {}  # Caffe blob -> its shape, where known
    input_names, input_set = [], set()
    flipped = set()
    unmapped = []
    arg_params, aux_params = {}, {}
    mean_done = False
    for layer in net.layer:
        t = layer.type
        where = layer_context(layer.name, t)
        if t == "Input" or t in DATA_TYPES:
            for top, shape in zip(layer.top, _input_shapes_of(layer)):
                if top in blobs:
                    raise ConversionError("%s: top %r is already produced by layer %r"
                                          % (where, top, producer[top]))
                if input_shapes and top in input_shapes:
                    shape = tuple(input_shapes[top])
                ctx.reserve(top)
                if shape is not None:
                    ctx.input_shapes[top] = shape
                sym = mx.sym.var(top)
                flip_input = rgb and shape is not None and len(shape) == 4 and shape[1] == 3
                if mean is not None and not mean_done and shape is not None and len(shape) == 4:
                    m = mean_to_array(mean, shape)
                    if flip_input:
                        # The mean is given in Caffe's (BGR) order and the input now comes as RGB.
                        m = np.ascontiguousarray(m[:, ::-1])
                    name = top + "_mean"
                    arg_params[name] = m
                    sym = mx.sym.broadcast_sub(sym, ctx.var(name, value=m), name=top + "_sub_mean")
                    mean_done = True
                if flip_input:
                    if weights is None:
                        sym = mx.sym.reverse(sym, axis=1, name=top + "_rgb2bgr")
                    else:
                        flipped.add(top)
                blobs[top], producer[top] = sym, layer.name
                shapes[top] = shape
                input_names.append(top)
                input_set.add(top)
            continue
        if t in DROPPED_TYPES:
            continue
        for b in layer.bottom:
            if b not in blobs:
                raise ConversionError("%s: bottom %r is not produced by any earlier layer" % (where, b))
        if t == "Silence":
            available.difference_update(layer.bottom)
            continue
        in_syms = [blobs[b] for b in layer.bottom]
        out_flipped = False
        if weights is not None and layer.name in weights:
            layer_blobs = weights[layer.name]
        else:
            layer_blobs = None
        fb = [i for i, b in enumerate(layer.bottom) if b in flipped]
        if fb:
            if t in _FLIP_EQUIVARIANT or (t == "Eltwise" and len(fb) == len(in_syms)):
                out_flipped = True
            else:
                new = _flip_blobs(layer, layer_blobs, shapes.get(layer.bottom[0])) if (
                    layer_blobs is not None and len(in_syms) == 1) else None
                if new is not None:
                    weights[layer.name] = new
                    out_flipped = t in ("BatchNorm", "Scale", "Bias", "PReLU", "Normalize")
                else:
                    # No weight absorbs the flip here: undo it explicitly on the flipped bottoms.
                    for i in fb:
                        in_syms[i] = mx.sym.reverse(in_syms[i], axis=1,
                                                    name=ctx.op_name(layer, "bgr%d" % i))
        translator = get_translator(t)
        tr = None
        # With every bottom's shape known the layer is translated on placeholders and spliced in:
        # shape questions then cost a few nodes, not the whole net so far (quadratic in depth).
        # A layer whose tops keep its bottoms' shape, or whose translator says its tops' shapes,
        # needs no shape question answered beyond its bottoms': it is translated on them
        # directly, their shapes known by identity.
        bottom_shapes = [shapes.get(b) for b in layer.bottom]
        local = bool(in_syms) and all(bs is not None for bs in bottom_shapes)
        same = t in _SAME_SHAPE and all(bs == bottom_shapes[0] for bs in bottom_shapes)
        direct = local and (same or t in _SHAPE_BY_TRANSLATOR)
        if direct:
            local = False
            ctx.bottoms = list(zip(in_syms, bottom_shapes))
            args_in = in_syms
        elif local:
            holders = [PLACEHOLDER + str(i) for i in range(len(in_syms))]
            ctx.input_shapes.update(zip(holders, bottom_shapes))
            args_in = [mx.sym.var(h) for h in holders]
        else:
            args_in = in_syms
        try:
            if translator is not None:
                tr = translator(layer, args_in, ctx)
            if tr is None:
                if not fallback:
                    unmapped.append(layer)
                    for top in layer.top:
                        blobs[top] = mx.sym.var("__unmapped__" + top)
                        producer[top] = layer.name
                        shapes[top] = None
                    continue
                tr = _fallback.fallback(layer, args_in, ctx, weights.get(layer.name) if weights else None)
            if len(tr.outputs) != len(layer.top):
                raise ConversionError("%s: translates to %d outputs but has %d tops"
                                      % (where, len(tr.outputs), len(layer.top)))
            if direct:
                outputs = list(tr.outputs)
                if same:
                    top_shapes = [bottom_shapes[0]] * len(outputs)
                elif tr.shapes is not None and len(tr.shapes) == len(outputs):
                    top_shapes = [tuple(s) for s in tr.shapes]
                else:  # a fallback, or an input the translator could not size: ask MXNet
                    top_shapes = ctx.shapes(mx.sym.Group(outputs))
            elif local:
                outputs, top_shapes = _splice(ctx, list(tr.outputs), dict(zip(holders, in_syms)))
            else:
                outputs, top_shapes = list(tr.outputs), [None] * len(tr.outputs)
        except CaffeError:
            raise
        except mx.base.MXNetError as exc:
            raise ConversionError("%s: %s" % (where, str(exc).strip().splitlines()[0])) from exc
        finally:
            ctx.bottoms = ()
            if local:
                for h in holders:
                    ctx.input_shapes.pop(h, None)
        for b in layer.bottom:
            available.discard(b)
        for top, out, shape in zip(layer.top, outputs, top_shapes):
            if top in blobs and top not in layer.bottom:
                raise ConversionError("%s: top %r is already produced by layer %r; only in-place "
                                      "layers may reuse a blob name" % (where, top, producer[top]))
            blobs[top], producer[top], shapes[top] = out, layer.name, shape
            available.add(top)
            input_set.discard(top)
            if out_flipped:
                flipped.add(top)
            else:
                flipped.discard(top)
        arg_params.update(tr.arg_params or {})
        aux_params.update(tr.aux_params or {})
    if unmapped:
        names = ", ".join(layer_context(l.name, l.type) for l in unmapped)
        types = sorted(set(l.type for l in unmapped))
        raise UnsupportedLayerError("%d layer(s) have no native MXNet mapping (types: %s): %s"
                                    % (len(unmapped), ", ".join(types), names))
    output_names = sorted(b for b in available if b not in input_set)
    if not output_names:
        raise ConversionError("the net has no output blobs after dropping loss/accuracy layers")
    outs = []
    for name in output_names:
        sym = blobs[name]
        if name in flipped:
            # An output still in RGB order (no weight absorbed the flip): give Caffe's order back.
            sym = mx.sym.reverse(sym, axis=1, name=name + "_bgr")
        outs.append(sym)
    symbol = outs[0] if len(outs) == 1 else mx.sym.Group(outs)
    arguments = set(symbol.list_arguments())
    used_inputs = [n for n in input_names if n in arguments]

    def to_ndarray(value):
        out = _ndarray_copy(np.ascontiguousarray(value, dtype=np.float32))
        if release is not None:
            release(value)  # the file's pages under it are no longer needed in memory
        return out

    auxs = set(symbol.list_auxiliary_states())
    wanted = [(True, k, v) for k, v in arg_params.items() if k in arguments]
    wanted += [(False, k, v) for k, v in aux_params.items() if k in auxs]
    # Values still in the caffemodel are read from it straight into their NDArrays, at once.
    read = from_file([v for _, _, v in wanted]) if from_file is not None else [None] * len(wanted)
    args, aux = {}, {}
    for (is_arg, k, v), nd in zip(wanted, read):
        (args if is_arg else aux)[k] = to_ndarray(v) if nd is None else nd
    return ConvertedNet(symbol, args, aux, used_inputs,
                        {k: v for k, v in ctx.input_shapes.items() if k in used_inputs},
                        output_names, blobs, ctx.fixed_input_size,
                        {k: v for k, v in shapes.items() if v is not None})


def _ndarray_copy(array):
    """A new CPU NDArray holding a copy of the C-contiguous ``array``.

    The copy is written straight into the fresh NDArray's memory (nothing can be pending on it):
    half the cost of ``mx.nd.empty`` + ``_sync_copyfrom`` per parameter, which a ResNet-50 has
    320 of.
    """
    made = _new_cpu_ndarray(array.shape, array.dtype) if array.size and array.ndim else None
    if made is None:
        out = mx.nd.empty(array.shape, dtype=array.dtype)
        if array.size:
            out._sync_copyfrom(array)
        return out
    ctypes.memmove(made[1], array.ctypes.data, array.nbytes)
    return made[0]


def _load(prototxt, caffemodel, phase, progress=None):
    net = read_prototxt(prototxt)
    upgrade_net(net)
    filter_phase(net, phase)
    weights = read_weights(caffemodel, progress=progress) if caffemodel is not None else None
    if weights is None and any(len(l.blobs) for l in net.layer):
        # A binary NetParameter given as "prototxt" text is not possible, but a prototxt with
        # inline blobs is: use them.
        weights = {l.name: [_blob_array(b) for b in l.blobs] for l in net.layer if len(l.blobs)}
    for l in net.layer:
        l.ClearField("blobs")
    return net, weights


def _blob_array(blob):
    from .weights import blob_to_array
    return blob_to_array(blob)


def _check_outputs(out_prefix, overwrite):
    paths = [out_prefix + "-symbol.json", out_prefix + "-0000.params"]
    directory = os.path.dirname(os.path.abspath(out_prefix))
    if not os.path.isdir(directory):
        raise ConversionError("cannot write outputs %r: directory %r does not exist" % (out_prefix, directory))
    if not os.access(directory, os.W_OK):
        raise ConversionError("cannot write outputs %r: directory %r is not writable" % (out_prefix, directory))
    if not overwrite:
        for p in paths:
            if os.path.exists(p):
                raise ConversionError("output %r already exists (pass overwrite=True to replace it)" % p)
    return paths


def _write_outputs(converted, paths, overwrite):
    """Write symbol and params through temporary files renamed into place: no partial outputs."""
    try:
        with atomic_outputs(paths, overwrite, ConversionError) as temps:
            converted.symbol.save(temps[0])
            blob = {"arg:" + k: v for k, v in converted.arg_params.items()}
            blob.update({"aux:" + k: v for k, v in converted.aux_params.items()})
            mx.nd.save(temps[1], blob)
    except mx.base.MXNetError as exc:
        raise ConversionError("cannot write outputs %r: %s" % (paths[0][:-len("-symbol.json")],
                                                               str(exc).splitlines()[0])) from exc


def convert(prototxt, caffemodel=None, out_prefix=None, *, mean=None, rgb=False, fuse=False, fallback=True,
            input_shapes=None, phase="test", overwrite=False, details=False, progress=None):
    """Convert a Caffe model to an MXNet symbol and parameters.

    Parameters
    ----------
    prototxt : str or os.PathLike
        Path of the net definition, or its text. V0/V1/V2 and train_val nets
        (filtered by ``phase``) are accepted.
    caffemodel : str or os.PathLike, optional
        Path of the trained weights; without it only the symbol is built and
        the parameter dicts are empty.
    out_prefix : str, optional
        Write ``PREFIX-symbol.json`` and ``PREFIX-0000.params`` (loadable with
        ``mx.gluon.SymbolBlock.imports``). Written atomically: on any error
        nothing is left behind.
    mean : str, array-like or mxnet.nd.NDArray, optional
        Subtract this mean from the first 4-D input inside the graph: a mean
        ``.binaryproto`` path, a (C, H, W) image (center-cropped to the input
        size as Caffe's test transform does) or per-channel values.
    rgb : bool
        Make the model take RGB input instead of Caffe's BGR by reversing the
        channels of every weight that reads the input channels (the first
        convolution and any per-channel layer before it; the mean too).
        Where no weight can absorb the reversal an explicit reverse is added.
    fuse : bool
        Fold BatchNorm (+Scale) into the convolution before it.
    fallback : bool
        A layer with no native mapping becomes a CaffeLayer; with ``False``
        every such layer is listed in one UnsupportedLayerError.
    input_shapes : dict, optional
        Input name -> shape, overriding (or supplying) the prototxt's.
    phase : {"test", "train"}
        Phase for include/exclude rules.
    overwrite : bool
        Replace existing output files.
    details : bool
        Return a :class:`ConvertedNet` instead of the 3-tuple.
    progress : callable, optional
        Called as ``progress(done_bytes, total_bytes)`` while the caffemodel is read.

    Returns
    -------
    (symbol, arg_params, aux_params)
        ``mx.sym.Symbol`` and two dicts of name -> ``mx.nd.NDArray``.

    Raises
    ------
    CaffeProtoError
        Malformed prototxt/caffemodel/mean (names the line/field or blob).
    ConversionError
        A layer cannot be converted as written (names the layer and field),
        or the outputs cannot be written.
    UnsupportedLayerError
        ``fallback=False`` and some layers have no native mapping (all listed).
    """
    paths = _check_outputs(os.fspath(out_prefix), overwrite) if out_prefix is not None else None
    net, weights = _load(prototxt, caffemodel, phase, progress)
    converted = convert_net(net, weights, mean=mean, rgb=rgb, fuse=fuse, fallback=fallback,
                            input_shapes=input_shapes)
    if paths is not None:
        _write_outputs(converted, paths, overwrite)
    if details:
        return converted
    return converted.symbol, converted.arg_params, converted.aux_params


def _mkldnn_available():
    try:
        from mxnet.runtime import Features
        return Features().is_enabled("MKLDNN")
    except Exception:  # pragma: no cover - very old or stripped MXNet builds
        return False


def _partition_for_cpu(converted, values):
    """``converted.symbol`` partitioned by MXNet's MKLDNN subgraph backend, or the symbol as is.

    The backend fuses Convolution with a BatchNorm, ReLU or sum after it (and FullyConnected with
    its activation) into ``_sg_mkldnn_*`` nodes that keep their weights in MKLDNN's layout between
    calls. ``values`` (name -> NDArray) is updated with any parameter the backend adds.
    """
    if not _mkldnn_available():
        return converted.symbol
    missing = [n for n in converted.input_names if n not in converted.input_shapes]
    if missing:
        raise ConversionError("inference=True needs the shapes of the inputs %s to partition the graph: "
                              "give them in the prototxt or as input_shapes=" % ", ".join(map(repr, missing)))
    arguments = set(converted.symbol.list_arguments())
    args = {k: v for k, v in values.items() if k in arguments}
    aux = {k: v for k, v in values.items() if k not in arguments}
    shapes = {n: tuple(converted.input_shapes[n]) for n in converted.input_names}
    try:
        symbol = converted.symbol.optimize_for("MKLDNN", args, aux, ctx=mx.cpu(), shape_dict=shapes)
    except mx.base.MXNetError as exc:
        raise ConversionError("MKLDNN partitioning failed: %s" % str(exc).strip().splitlines()[0]) from exc
    values.update(args)
    values.update(aux)
    return symbol


class _FixedSizeBlock(mx.gluon.SymbolBlock):
    """A SymbolBlock whose graph holds for its convert-time input shapes only (batch aside).

    ``import_model(inference=True)`` makes SSD priors constants; a call with another image size
    raises instead of using priors computed for a different image.
    """

    def forward(self, x, *args):
        inputs = (x,) + args
        for name, value in zip(self._gc_input_names, inputs):
            want = self._gc_input_shapes.get(name)
            shape = getattr(value, "shape", None)
            if want is not None and shape is not None and tuple(shape[1:]) != tuple(want[1:]):
                raise CaffeShapeError(
                    "input %r has shape %s, but this inference graph holds for (N, %s) only: layer(s) %s "
                    "keep priors computed for that size; import the model again with input_shapes={%r: %s}"
                    % (name, tuple(shape), ", ".join(map(str, want[1:])), ", ".join(self._gc_fixed_by),
                       name, tuple(shape)))
        return super().forward(x, *args)


def import_model(prototxt, caffemodel=None, ctx=None, *, inference=False, **options):
    """Convert a Caffe model into a hybridizable ``mx.gluon.SymbolBlock``.

    Parameters
    ----------
    prototxt, caffemodel
        As for :func:`convert`.
    ctx : mxnet.Context or list, optional
        Where the parameters live; ``mx.cpu()`` by default.
    inference : bool
        Build the fastest graph for inference only (no gradients): BatchNorm
        (+Scale) fold into the convolution before them (``fuse=True`` unless
        ``fuse`` is given) and, on CPU with an MKLDNN build of MXNet, the graph
        is partitioned by MXNet's MKLDNN subgraph backend (Convolution fused
        with its BatchNorm/ReLU/sum, FullyConnected with its activation, weights
        kept in MKLDNN's layout between calls). Outputs match the plain graph
        within float rounding (about 1e-7 relative). Partitioning needs the
        input shapes (prototxt or ``input_shapes=``); the batch size may differ
        at run time. The block cannot be trained or exported to ONNX; hybridize
        it as usual (``static_alloc=True, static_shape=True`` is fastest).
        SSD nets: the priors (PriorBox) become constants for the input size
        given, and NMS runs on gluon_caffe's single-threaded operator when its
        library is loaded; the block then refuses other image sizes
        (CaffeShapeError: import again with ``input_shapes=``).
    **options
        ``mean``, ``rgb``, ``fuse``, ``fallback``, ``input_shapes``, ``phase``
        as for :func:`convert`.

    Returns
    -------
    mxnet.gluon.SymbolBlock
        Inputs named after the prototxt's input blobs, in prototxt order; one
        output per Caffe output blob, sorted by name (Caffe's order). Without
        a caffemodel the parameters are left uninitialized.

    Raises
    ------
    ConversionError
        As for :func:`convert`; with ``inference=True``, also when an input
        shape is unknown or the MKLDNN backend rejects the graph.
    """
    ctx = ctx or mx.cpu()
    if inference:
        options.setdefault("fuse", True)
    phase = options.pop("phase", "test")
    progress = options.pop("progress", None)
    net, weights = _load(prototxt, caffemodel, phase, progress)
    converted = convert_net(net, weights, inference=inference, **options)
    values = dict(converted.arg_params)
    values.update(converted.aux_params)
    symbol = converted.symbol
    contexts = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    if inference and values and all(c.device_type == "cpu" for c in contexts):
        symbol = _partition_for_cpu(converted, values)
    inputs = [mx.sym.var(n) for n in converted.input_names]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if converted.fixed_input_size:
            block = _FixedSizeBlock(symbol, inputs)
            block._gc_input_names = list(converted.input_names)
            block._gc_input_shapes = dict(converted.input_shapes)
            block._gc_fixed_by = list(converted.fixed_input_size)
        else:
            block = mx.gluon.SymbolBlock(symbol, inputs)
    params = block.collect_params()
    if values:
        for name, param in params.items():
            if name in values:
                param._load_init(values[name], ctx)
    block.caffe_output_names = list(converted.output_names)
    return block
