"""Caffe layers and losses as Gluon blocks (real libcaffe inside MXNet's graph).

Importing this package loads the C++ operator ``gluon_caffe_CaffeOp`` that the blocks use (and
exported symbol files name), and registers the Python CustomOp ``gluon_caffe.CaffeOp`` behind the
symbols of :mod:`gluon_caffe.sym` and the converter's fallback layers.
"""

from ._op import OP_TYPE, CaffeFiller
from .layer import CaffeLayer
from .loss import CaffeLossBlock

__all__ = ["CaffeLayer", "CaffeLossBlock", "CaffeFiller", "OP_TYPE"]
