"""The one hook through which a layer with no native mapping is converted: a CaffeLayer in the graph."""

from google.protobuf import text_format

from ..errors import CaffeError, ConversionError, UnsupportedLayerError, layer_context
from .registry import Translation

__all__ = ["fallback", "layer_prototxt"]

# Fields that describe the layer's place in a net, not the layer: the operator gets its own.
_PLACEMENT_FIELDS = ("bottom", "top", "blobs", "include", "exclude", "phase", "loss_weight",
                     "propagate_down")


def layer_prototxt(layer):
    """The ``layer { ... }`` text a CaffeLayer needs to run `layer` on its own."""
    bare = type(layer)()
    bare.CopyFrom(layer)
    for field in _PLACEMENT_FIELDS:
        bare.ClearField(field)
    return "layer {\n%s}" % text_format.MessageToString(bare, indent=2)


def fallback(layer, inputs, ctx, blobs=None):
    """Translate ``layer`` by running real Caffe inside the graph (``gluon_caffe.CaffeOp``).

    Parameters
    ----------
    layer : caffe_pb2.LayerParameter
        The layer, V2, with its prototxt fields (no blobs).
    inputs : list of mxnet.symbol.Symbol
        The layer's bottoms.
    ctx : ConvertContext
        The conversion context (shapes, names).
    blobs : list of numpy.ndarray or None
        The layer's weights from the caffemodel, Caffe layout.

    Returns
    -------
    Translation
        The operator's outputs; its blobs as ``<name>_weight``, ``<name>_bias``, ``<name>_blob2``...
        (blobs Caffe never learns, like BatchNorm's statistics, as auxiliary states).

    Raises
    ------
    UnsupportedLayerError
        libcaffe cannot run the layer either (not compiled in), or the bridge is not available.
    ConversionError
        The caffemodel's blobs do not match what Caffe sets the layer up with.
    """
    where = layer_context(layer.name, layer.type)
    try:
        from ..nn._op import describe
        from ..sym import CaffeOp
    except ImportError as exc:
        raise UnsupportedLayerError("%s: no native MXNet mapping, and the CaffeLayer fallback needs the "
                                    "libcaffe bridge, which failed to load (%s)" % (where, exc)) from None
    text = layer_prototxt(layer)
    try:
        spec = describe(text, num_data=len(inputs), num_out=len(layer.top))
    except UnsupportedLayerError as exc:
        raise UnsupportedLayerError("%s: no native MXNet mapping and libcaffe cannot run it either: %s"
                                    % (where, exc)) from None
    except CaffeError as exc:
        raise ConversionError("%s: cannot run as a CaffeLayer: %s" % (where, exc)) from None
    name = ctx.op_name(layer)
    op = CaffeOp(*inputs, prototxt=text, num_data=len(inputs), num_out=len(layer.top), name=name)
    outputs = [op[i] for i in range(len(layer.top))] if len(layer.top) > 1 else [op]
    arg_params, aux_params = {}, {}
    if blobs:
        if len(blobs) != len(spec.blobs):
            raise ConversionError("%s: the caffemodel has %d blobs, Caffe sets the layer up with %d"
                                  % (where, len(blobs), len(spec.blobs)))
        for blob in spec.blobs:
            target = aux_params if blob.aux else arg_params
            target["%s_%s" % (name, blob.role)] = blobs[blob.index]
    return Translation(outputs, arg_params, aux_params)
