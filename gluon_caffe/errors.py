"""The exception hierarchy of gluon_caffe (pure Python, importable without libcaffe)."""

__all__ = [
    "CaffeError",
    "CaffeCheckError",
    "CaffeProtoError",
    "CaffeShapeError",
    "CaffeIOError",
    "UnsupportedLayerError",
    "ConversionError",
    "layer_context",
]


class CaffeError(Exception):
    """Base class of every error gluon_caffe raises on purpose."""


class CaffeCheckError(CaffeError, RuntimeError):
    """A Caffe ``CHECK`` or ``LOG(FATAL)`` failed inside libcaffe.

    Attributes
    ----------
    check : str
        Caffe's own message ("Check failed: ...").
    source : str
        ``file:line`` in Caffe's sources where the check sits.
    context : str
        What the bridge or Net added, e.g. ``"layer 'conv1' (Convolution)"``.
    """

    def __init__(self, message, check="", source="", context=""):
        super().__init__(message)
        self.check = check
        self.source = source
        self.context = context


class CaffeProtoError(CaffeError, ValueError):
    """A prototxt, caffemodel or binaryproto could not be parsed or is inconsistent."""


class CaffeShapeError(CaffeError, ValueError):
    """An input's shape or dtype does not fit what the layer expects."""


class CaffeIOError(CaffeError, OSError):
    """A file or database could not be read or written."""


class UnsupportedLayerError(CaffeError, NotImplementedError):
    """A layer type is not available (not compiled into libcaffe, or not convertible)."""


class ConversionError(CaffeError, ValueError):
    """A Caffe model could not be converted to MXNet."""


def layer_context(name, type_):
    """Return how errors name a layer: ``"layer 'conv1' (Convolution)"``."""
    return "layer %r (%s)" % (name or "", type_ or "?")
