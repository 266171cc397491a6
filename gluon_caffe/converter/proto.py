"""Reading Caffe's protobuf files: prototxt (path or text) and caffemodel, with errors that say where."""

import os
import re

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from ..errors import CaffeIOError, CaffeProtoError

__all__ = ["caffe_pb2", "read_prototxt", "read_caffemodel", "read_blobproto", "is_prototxt_text"]

try:
    from ..proto import caffe_pb2
except ImportError as exc:  # pragma: no cover - only when the build step was skipped
    raise ImportError(
        "gluon_caffe.proto.caffe_pb2 is missing: it is generated from caffe.proto at build time "
        "(python -m grpc_tools.protoc -I gluon_caffe/proto --python_out=gluon_caffe/proto caffe.proto)"
    ) from exc



def is_prototxt_text(prototxt):
    """Tell whether a string is prototxt text rather than a file path.

    A string naming an existing file is a path; otherwise a string with
    ``{``, ``:`` or a newline is text (no file name of a model has those).
    """
    if not isinstance(prototxt, str):
        return False
    if os.path.isfile(prototxt):
        return False
    return any(c in prototxt for c in "{:\n")


def _read_bytes(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CaffeIOError("cannot read %s %r: %s" % (what, os.fspath(path), exc.strerror or exc)) from exc


_TOKEN = re.compile(r'#[^\n]*|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{}]|\b(layers?)\s*(?=\{)|\bname\s*:\s*"([^"]*)"')


def _layer_at_line(text, lineno, column=0):
    """Name the top-level layer enclosing 1-based ``lineno``/``column`` (best effort, for messages)."""
    pos = 0
    for _ in range(lineno - 1):
        nl = text.find("\n", pos)
        if nl < 0:
            break
        pos = nl + 1
    end = min(len(text), pos + max(column - 1, 0))
    depth, in_layer, name = 0, False, None
    for m in _TOKEN.finditer(text, 0, end):
        tok = m.group(0)
        if m.group(1) and depth == 0:
            in_layer, name = True, None
        elif m.group(2) is not None and in_layer and depth == 1 and name is None:
            name = m.group(2)
        elif tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth == 0:
                in_layer, name = False, None
    return name if in_layer else None


def read_prototxt(prototxt, message=None):
    """Parse a prototxt given as a path, as text, or as a ``NetParameter``.

    Parameters
    ----------
    prototxt : str, os.PathLike or caffe_pb2.NetParameter
        File path, prototxt text, or an already parsed message (copied).
    message : protobuf message class, optional
        What to parse into; ``caffe_pb2.NetParameter`` by default.

    Returns
    -------
    caffe_pb2.NetParameter
        The parsed message, not yet upgraded (see :mod:`.upgrade`).

    Raises
    ------
    CaffeProtoError
        Malformed text or an unknown field; the message names the source,
        line, column and (when it can tell) the enclosing layer.
    CaffeIOError
        The file cannot be read.
    """
    cls = message or caffe_pb2.NetParameter
    if isinstance(prototxt, cls):
        net = cls()
        net.CopyFrom(prototxt)
        return net
    if isinstance(prototxt, bytes):
        prototxt = prototxt.decode("utf-8")
    if is_prototxt_text(prototxt):
        text, source = prototxt, "prototxt text"
    else:
        if isinstance(prototxt, str) and not os.path.exists(prototxt):
            raise CaffeIOError("no such prototxt file: %r" % prototxt)
        raw = _read_bytes(prototxt, "prototxt")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CaffeProtoError("prototxt %r is not UTF-8 text (is it a binary caffemodel?)"
                                  % os.fspath(prototxt)) from exc
        source = "prototxt %r" % os.fspath(prototxt)
    net = cls()
    if cls is caffe_pb2.NetParameter:
        binary = _parse_with_libcaffe(text)
        if binary is not None:
            net.ParseFromString(binary)
            return net
    try:
        text_format.Merge(text, net, allow_unknown_extension=False)
    except text_format.ParseError as exc:
        line, col = exc.GetLine(), exc.GetColumn()
        detail = str(exc)
        # ParseError text starts with "line:col : "; we say it in words instead.
        detail = re.sub(r"^\d+:\d+\s*:\s*", "", detail)
        where = "%s, line %s column %s" % (source, line, col) if line else source
        layer = _layer_at_line(text, line, col or 0) if line else None
        if layer is not None:
            where += " (in layer %r)" % layer
        raise CaffeProtoError("%s: %s" % (where, detail)) from None
    return net


def _parse_with_libcaffe(text):
    """Wire-format bytes of a NetParameter's text parsed by protobuf's C++ parser inside libcaffe's
    bridge (~20x faster than ``text_format``), or None: no libcaffe here (the converter is pure
    Python), or the text does not parse with BVLC's caffe.proto (a field only this package's
    superset has, or an error, which ``text_format`` then reports with its line and layer)."""
    try:
        from .._ext import _caffe
    except ImportError:
        return None
    return _caffe.net_text_to_binary(text)


def read_caffemodel(caffemodel):
    """Parse a whole binary caffemodel (or any binary NetParameter) into a message.

    This holds every weight inside the message; converting big models goes
    through :func:`gluon_caffe.converter.weights.read_weights` instead, which
    does not copy the weights.

    Raises
    ------
    CaffeProtoError
        The bytes are not a NetParameter (truncated or another format).
    """
    return _parse_binary(caffemodel, caffe_pb2.NetParameter, "caffemodel")


def read_blobproto(path):
    """Parse a binary ``BlobProto`` file (a mean ``.binaryproto``)."""
    return _parse_binary(path, caffe_pb2.BlobProto, "binaryproto")


def _parse_binary(path, message_class, what):
    """Parse file `path` as a binary `message_class`; a decode failure names the file and the type."""
    message = message_class()
    try:
        message.ParseFromString(_read_bytes(path, what))
    except DecodeError as exc:
        raise CaffeProtoError("%s %r is truncated or not a Caffe %s: %s"
                              % (what, os.fspath(path), message_class.__name__, exc)) from None
    return message
