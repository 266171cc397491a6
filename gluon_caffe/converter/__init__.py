"""Caffe -> MXNet converter (pure Python: protobuf + mxnet, no libcaffe): convert, import_model, load_mean, save_mean."""

from .importer import convert, import_model
from .mean import load_mean, save_mean

__all__ = ["convert", "import_model", "load_mean", "save_mean"]
