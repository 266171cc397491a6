"""Caffe -> MXNet converter (pure Python: protobuf + mxnet, no libcaffe): convert, import_model, load_mean, save_mean."""

from .importer import convert, import_model
from .mean import load_mean, save_mean
from .registry import _load_builtin_layers

_load_builtin_layers()  # the translators register themselves (registry.py cannot import them: a cycle)

__all__ = ["convert", "import_model", "load_mean", "save_mean"]
