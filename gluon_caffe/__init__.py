"""gluon_caffe: real Caffe inside Apache MXNet Gluon.

Caffe layers as Gluon blocks, Caffe data as Gluon datasets, Caffe models converted to
Gluon SymbolBlocks and verified against real Caffe.

The converter (``convert``, ``import_model``, ``load_mean``, ``save_mean``) is pure Python and works
without libcaffe; everything that runs Caffe itself (``CaffeNet``, ``LayerRunner``, ``caffe_info``...)
loads the compiled bridge on first use.
"""

import importlib as _importlib
import os as _os

# mxnet first: it carries its own protobuf-lite and must not bind to libcaffe's libprotobuf.
import mxnet as _mx  # noqa: F401

from . import data
from .converter import convert, import_model, load_mean, save_mean
# verify() loads libcaffe only when called; importing it eagerly keeps gc.verify the function
# even after `import gluon_caffe.verify` (the submodule would otherwise shadow it).
from .verify import verify
from .errors import (CaffeCheckError, CaffeError, CaffeIOError, CaffeProtoError,  # noqa: F401
                     CaffeShapeError, ConversionError, UnsupportedLayerError)

__version__ = "0.1.0"

# Caffe layers as Gluon blocks and symbols. Importing them registers the `gluon_caffe.CaffeOp`
# operator, which `SymbolBlock.imports` of an exported net needs; without the bridge the converter
# still works and `gc.nn` / `gc.sym` explain what is missing when touched.
try:
    from . import nn, sym
    from .nn import CaffeLayer, CaffeLossBlock
except ImportError:
    pass

# name -> (module, attribute): loaded on first access, so that pure-Python use never needs libcaffe.
_LAZY = {
    "CaffeNet": (".caffenet", "CaffeNet"),
    "LayerRunner": ("._ext._caffe", "LayerRunner"),
    "layer_types": ("._ext._caffe", "layer_types"),
    "set_log_level": ("._ext._caffe", "set_log_level"),
    "get_log_level": ("._ext._caffe", "get_log_level"),
    "set_random_seed": ("._ext._caffe", "set_random_seed"),
    "caffe_info": (".info", "caffe_info"),
    "export_onnx": (".onnx", "export_onnx"),
    "nn": (".nn", None),
    "sym": (".sym", None),
    "CaffeLayer": (".nn", "CaffeLayer"),
    "CaffeLossBlock": (".nn", "CaffeLossBlock"),
}

__all__ = [
    "data", "convert", "import_model", "load_mean", "save_mean", "verify",
    "CaffeError", "CaffeCheckError", "CaffeProtoError", "CaffeShapeError", "CaffeIOError",
    "UnsupportedLayerError", "ConversionError",
] + sorted(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError("module 'gluon_caffe' has no attribute %r" % name)
    module, attr = _LAZY[name]
    try:
        value = _importlib.import_module(module, __name__)
        if attr is not None:
            value = getattr(value, attr)
    except ImportError as e:
        what = "the onnx package" if module == ".onnx" else "the compiled libcaffe bridge"
        raise ImportError("gluon_caffe.%s needs %s, which failed to load (%s); run `make test` or "
                          "scripts/setup.sh to install and build everything" % (name, what, e)) from e
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


if _os.environ.get("GLUON_CAFFE_LOG"):
    __getattr__("set_log_level")(_os.environ["GLUON_CAFFE_LOG"])
