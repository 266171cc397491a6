"""The one hook through which a layer with no native mapping is converted (a CaffeLayer, issue 3)."""

from ..errors import UnsupportedLayerError, layer_context

__all__ = ["fallback"]


def fallback(layer, inputs, ctx, blobs=None):
    """Translate ``layer`` by running real Caffe inside the graph.

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

    Raises
    ------
    UnsupportedLayerError
        Until gluon_caffe.nn.CaffeLayer provides an MXNet operator for it.
    """
    raise UnsupportedLayerError(
        "%s: no native MXNet mapping, and the CaffeLayer fallback is not available yet"
        % layer_context(layer.name, layer.type))
