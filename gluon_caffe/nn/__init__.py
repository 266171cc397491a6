"""Caffe layers and losses as Gluon blocks (real libcaffe inside MXNet's graph).

Importing this package registers the MXNet operator ``gluon_caffe.CaffeOp`` that the blocks, the
symbols of :mod:`gluon_caffe.sym` and exported symbol files use.
"""

from ._op import OP_TYPE, CaffeFiller
from .layer import CaffeLayer
from .loss import CaffeLossBlock

__all__ = ["CaffeLayer", "CaffeLossBlock", "CaffeFiller", "OP_TYPE"]
