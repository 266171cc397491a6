"""gluon_caffe: real Caffe inside Apache MXNet Gluon.

Caffe layers as Gluon blocks, Caffe data as Gluon datasets, Caffe models converted to
Gluon SymbolBlocks and verified against real Caffe.
"""

import os as _os

# mxnet first: it carries its own protobuf-lite and must not bind to libcaffe's libprotobuf.
import mxnet as _mx  # noqa: F401

from .errors import (CaffeCheckError, CaffeError, CaffeIOError, CaffeProtoError,  # noqa: F401
                     CaffeShapeError, ConversionError, UnsupportedLayerError)
from ._ext._caffe import LayerRunner, get_log_level, layer_types, set_log_level, set_random_seed
from .caffenet import CaffeNet
from .info import caffe_info

__version__ = "0.1.0"

__all__ = [
    "CaffeNet", "LayerRunner", "caffe_info", "layer_types", "set_log_level", "get_log_level",
    "set_random_seed", "CaffeError", "CaffeCheckError", "CaffeProtoError", "CaffeShapeError",
    "CaffeIOError", "UnsupportedLayerError", "ConversionError",
]

if _os.environ.get("GLUON_CAFFE_LOG"):
    set_log_level(_os.environ["GLUON_CAFFE_LOG"])
