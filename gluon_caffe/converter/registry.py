"""The translator registry: one ``translate_<type>(layer, inputs, ctx) -> Translation`` per Caffe layer type."""

import collections

__all__ = ["Translation", "register", "get_translator", "registered_types",
           "DROPPED_TYPES", "DATA_TYPES"]

Translation = collections.namedtuple("Translation", ["outputs", "arg_params", "aux_params", "shapes"])
Translation.__doc__ = """What a translator returns.

Attributes
----------
outputs : list of mxnet.symbol.Symbol
    One symbol per Caffe top, in the layer's top order.
arg_params : dict of str to numpy.ndarray
    Values of the new variables that are arguments (weights, biases, constants).
aux_params : dict of str to numpy.ndarray
    Values of the new auxiliary states (BatchNorm moving statistics).
shapes : list of tuple, optional
    Each top's shape by Caffe's own rule, where the translator knows it from its bottoms'
    shapes (Convolution, InnerProduct, Pooling): MXNet's shape inference is then skipped.
"""
Translation.__new__.__defaults__ = ((), None, None, None)

_REGISTRY = {}

# Layers that only compute losses or metrics on labels: nothing of them belongs in
# an inference graph, and their bottoms stay graph outputs.
DROPPED_TYPES = frozenset([
    "Accuracy", "ContrastiveLoss", "EuclideanLoss", "HingeLoss", "InfogainLoss",
    "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss", "SoftmaxWithLoss",
    "MultiBoxLoss", "DetectionEvaluate", "HDF5Output",
])

# Layers that read a dataset: in a converted graph their tops become input variables.
DATA_TYPES = frozenset([
    "Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData",
    "AnnotatedData", "VideoData",
])


def register(*layer_types):
    """Register the decorated function as the translator of ``layer_types``.

    Stacking the decorator (or passing several names) registers aliases.

    Raises
    ------
    ValueError
        A type already has a translator: one type, one translation.
    """
    if not layer_types:
        raise TypeError("register() needs at least one Caffe layer type")

    def deco(fn):
        for t in layer_types:
            if t in _REGISTRY and _REGISTRY[t] is not fn:
                raise ValueError("Caffe layer type %r already has a translator (%s.%s)"
                                 % (t, _REGISTRY[t].__module__, _REGISTRY[t].__name__))
            _REGISTRY[t] = fn
        return fn
    return deco


def get_translator(layer_type):
    """Return the translator for ``layer_type``, or ``None`` when it has no native mapping."""
    _load_builtin_layers()
    return _REGISTRY.get(layer_type)


def registered_types():
    """Sorted list of the Caffe layer types with a native translator."""
    _load_builtin_layers()
    return sorted(_REGISTRY)


_loaded = False


def _load_builtin_layers():
    # Imported lazily so that registry.py has no import cycle with the layer modules.
    global _loaded
    if not _loaded:
        _loaded = True
        from .layers import act, conv, eltwise, norm, pool, shape, ssd  # noqa: F401
