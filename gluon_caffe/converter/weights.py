"""Caffemodel weights as numpy arrays without copying them: a walk over the protobuf wire format."""

import ctypes
import math
import mmap
import os
import sys

import numpy as np

from ..errors import CaffeIOError, CaffeProtoError
from .proto import caffe_pb2

__all__ = ["read_weights", "blob_to_array", "WeightFile"]

# Field numbers (caffe.proto): where the blobs of each layer message live.
_NET_LAYERS_V1, _NET_LAYER_V2 = 2, 100
_V2_NAME, _V2_BLOBS = 1, 7
_V1_NAME, _V1_BLOBS, _V1_V0 = 4, 6, 1
_V0_NAME, _V0_BLOBS = 1, 50
_B_NUM, _B_CHANNELS, _B_HEIGHT, _B_WIDTH = 1, 2, 3, 4
_B_DATA, _B_SHAPE, _B_DOUBLE_DATA = 5, 7, 8
_B_RAW_TYPE, _B_RAW_DATA = 10, 12
_RAW_DTYPES = {caffe_pb2.FLOAT16: "<f2", caffe_pb2.FLOAT: "<f4", caffe_pb2.DOUBLE: "<f8"}


class _Truncated(Exception):
    pass


def _varint(buf, pos, end):
    result = shift = 0
    while True:
        if pos >= end:
            raise _Truncated(pos)
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CaffeProtoError("malformed varint at byte %d" % pos)


def _fields(buf, pos, end):
    """Yield ``(field_number, wire_type, value_or_start, stop)`` for one message's fields.

    Length-delimited values come back as the (start, stop) byte range, so that
    nothing is copied; varints come back as their value.
    """
    while pos < end:
        key = buf[pos]
        if key < 0x80:  # one-byte keys and lengths are the rule: no call for them
            pos += 1
        else:
            key, pos = _varint(buf, pos, end)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val = buf[pos] if pos < end else 0x80
            if val < 0x80:
                pos += 1
            else:
                val, pos = _varint(buf, pos, end)
            yield num, wt, val, pos
        elif wt == 2:
            n = buf[pos] if pos < end else 0x80
            if n < 0x80:
                pos += 1
            else:
                n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise _Truncated(pos)
            yield num, wt, pos, pos + n
            pos += n
        elif wt == 5:
            if pos + 4 > end:
                raise _Truncated(pos)
            yield num, wt, pos, pos + 4
            pos += 4
        elif wt == 1:
            if pos + 8 > end:
                raise _Truncated(pos)
            yield num, wt, pos, pos + 8
            pos += 8
        else:
            raise CaffeProtoError("unsupported protobuf wire type %d at byte %d" % (wt, pos))


def _packed_ints(buf, start, stop):
    out = []
    pos = start
    while pos < stop:
        v, pos = _varint(buf, pos, stop)
        out.append(v - (1 << 64) if v >= 1 << 63 else v)
    return out


def blob_to_array(blob):
    """Convert a parsed ``caffe_pb2.BlobProto`` to a float32 numpy array of its shape.

    Reads ``data``, ``double_data`` or NVCaffe's ``raw_data`` (fp16/fp32/fp64),
    and both the ``shape`` message and the legacy num/channels/height/width.

    Raises
    ------
    CaffeProtoError
        The number of values does not match the shape, or ``raw_data_type``
        is not a floating type.
    """
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    elif any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = None
    if len(blob.data):
        arr = np.asarray(blob.data, dtype=np.float32)
    elif len(blob.double_data):
        arr = np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
    elif blob.HasField("raw_data"):
        dt = _RAW_DTYPES.get(blob.raw_data_type)
        if dt is None:
            raise CaffeProtoError("BlobProto.raw_data_type %s is not a floating type"
                                  % caffe_pb2.Type.Name(blob.raw_data_type))
        arr = np.frombuffer(blob.raw_data, dtype=dt).astype(np.float32)
    else:
        arr = np.zeros(0, np.float32)
    if shape is None:
        shape = arr.shape
    if math.prod(shape) != arr.size:
        raise CaffeProtoError("BlobProto has %d values but its shape %s needs %d"
                              % (arr.size, shape, math.prod(shape)))
    return arr.reshape(shape)


def _blob(buf, start, stop):
    """Read one BlobProto from bytes ``buf[start:stop]`` as a float32 array (a view when possible)."""
    shape = legacy = None
    data = None
    raw_type = caffe_pb2.FLOAT
    raw = None
    for num, wt, a, b in _fields(buf, start, stop):
        if num == _B_SHAPE and wt == 2:
            dims = []
            for n2, wt2, a2, b2 in _fields(buf, a, b):
                if n2 == 1 and wt2 == 2:
                    dims.extend(_packed_ints(buf, a2, b2))
                elif n2 == 1 and wt2 == 0:
                    dims.append(a2)
            shape = tuple(dims)
        elif num in (_B_NUM, _B_CHANNELS, _B_HEIGHT, _B_WIDTH) and wt == 0:
            legacy = legacy or [0, 0, 0, 0]
            legacy[num - 1] = a
        elif num == _B_DATA and wt == 2:
            if (b - a) % 4:
                raise CaffeProtoError("BlobProto.data has %d bytes, not a multiple of 4" % (b - a))
            data = ("<f4", a, b)
        elif num == _B_DOUBLE_DATA and wt == 2 and data is None:
            data = ("<f8", a, b)
        elif num == _B_RAW_TYPE and wt == 0:
            raw_type = a
        elif num == _B_RAW_DATA and wt == 2:
            raw = (a, b)
        elif num in (_B_DATA, _B_DOUBLE_DATA, _B_SHAPE):
            # Unpacked encodings (allowed by protobuf, never written by Caffe): let protobuf read it.
            return blob_to_array(caffe_pb2.BlobProto.FromString(bytes(buf[start:stop])))
    if data is None and raw is not None:
        dt = _RAW_DTYPES.get(raw_type)
        if dt is None:
            raise CaffeProtoError("BlobProto.raw_data_type %d is not a floating type" % raw_type)
        data = (dt, raw[0], raw[1])
    if data is None:
        arr = np.zeros(0, np.float32)
    else:
        dt, a, b = data
        itemsize = np.dtype(dt).itemsize
        if (b - a) % itemsize:
            raise CaffeProtoError("BlobProto raw_data has %d bytes, not a multiple of %d"
                                  % (b - a, itemsize))
        arr = np.frombuffer(buf, dtype=dt, count=(b - a) // itemsize, offset=a)
        if dt != "<f4":
            arr = arr.astype(np.float32)
    if shape is None:
        shape = tuple(legacy) if legacy is not None else arr.shape
    if math.prod(shape) != arr.size:
        raise CaffeProtoError("BlobProto has %d values but its shape %s needs %d"
                              % (arr.size, shape, math.prod(shape)))
    return arr.reshape(shape)


def _layer(buf, start, stop, name_field, blobs_field):
    name = None
    blobs = []
    for num, wt, a, b in _fields(buf, start, stop):
        if num == name_field and wt == 2:
            name = bytes(buf[a:b]).decode("utf-8", "replace")
        elif num == blobs_field and wt == 2:
            blobs.append((a, b))
    return name, blobs


class WeightFile(dict):
    """Layer name -> list of float32 arrays (read-only views of the mapped caffemodel).

    Attributes
    ----------
    path : str
        The caffemodel it came from.
    """

    path = None
    _map = None     # the mmap the views point into
    _base = 0       # its address
    _stat = None    # (device, inode, size, mtime) of the file mapped

    def _offset(self, array):
        """Byte offset of ``array``'s values in the mapped file, or None if it is not a view of it."""
        if self._map is None or not isinstance(array, np.ndarray) or array.nbytes == 0:
            return None
        start = array.__array_interface__["data"][0] - self._base
        if start < 0 or start + array.nbytes > len(self._map):
            return None
        return start

    def ndarrays(self, arrays, max_gap=1 << 20):
        """Fresh CPU NDArrays holding the values of ``arrays``, read from the file.

        Each array that is a contiguous float32 view of this file gets an NDArray of its shape,
        filled straight from the file by ``preadv`` (one system call for hundreds of blobs:
        neither the mapped pages nor a copy of them are touched); anything else gets None.
        Should the file have changed since it was mapped, or a read fall short, the values come
        from the mapping instead, as the views show them.

        Returns
        -------
        list of mxnet.nd.NDArray or None
            One per array, in order.
        """
        from .._ndarray import new_cpu_ndarray
        out = [None] * len(arrays)
        todo = []  # (file offset, nbytes, index, address)
        for i, a in enumerate(arrays):
            off = self._offset(a)
            if (off is None or a.dtype != np.float32 or a.ndim == 0 or not a.flags.c_contiguous
                    or sys.byteorder != "little"):
                continue
            made = new_cpu_ndarray(a.shape, np.float32)
            if made is None:
                return [None] * len(arrays)
            out[i] = made[0]
            todo.append((off, a.nbytes, i, made[1]))
        if not todo:
            return out
        todo.sort()
        try:
            fd = os.open(self.path, os.O_RDONLY) if hasattr(os, "preadv") else None
        except OSError:
            fd = None
        try:
            if fd is not None:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != self._stat:
                    os.close(fd)
                    fd = None
            for run in self._runs(todo, max_gap):
                if fd is None or not self._preadv(fd, run, max_gap):
                    for off, n, _, addr in run:  # the views' values, from the mapping
                        ctypes.memmove(addr, self._base + off, n)
        finally:
            if fd is not None:
                os.close(fd)
        return out

    @staticmethod
    def _runs(todo, max_gap):
        """``todo`` (sorted by offset) cut into runs one ``preadv`` can fill: gaps up to
        ``max_gap`` bytes, no overlap, at most 512 buffers."""
        run, end = [], None
        for item in todo:
            off, n = item[0], item[1]
            if run and (off < end or off - end > max_gap or len(run) >= 512):
                yield run
                run = []
            run.append(item)
            end = off + n
        if run:
            yield run

    @staticmethod
    def _preadv(fd, run, max_gap):
        """Read one run into its NDArrays; the bytes between them land in a scratch buffer."""
        scratch = None
        bufs, end = [], None
        for off, n, _, addr in run:
            if end is not None and off > end:
                if scratch is None:
                    scratch = memoryview(bytearray(max_gap))
                bufs.append(scratch[:off - end])
            bufs.append((ctypes.c_char * n).from_address(addr))
            end = off + n
        start = run[0][0]
        try:
            return os.preadv(fd, bufs, start) == end - start
        except OSError:
            return False

    def release(self, array):
        """Let the kernel drop the mapped pages under ``array`` once its values were copied.

        Only a view into this file's mapping is affected (anything else is ignored); its values
        stay readable (the pages come back from the file on the next touch). Converting keeps one
        copy of the weights in memory instead of two: the mapped file's pages count in RSS.
        """
        start = self._offset(array)
        if start is None:
            return
        stop = start + array.nbytes
        page = mmap.PAGESIZE
        first = start // page * page
        try:
            self._map.madvise(mmap.MADV_DONTNEED, first, stop - first)
        except (AttributeError, OSError, ValueError):  # no madvise here: the pages just stay
            pass


def read_weights(caffemodel, progress=None):
    """Read every layer's blobs from a caffemodel without copying fp32 data.

    The file is memory-mapped and each blob becomes a numpy view of its bytes,
    so reading costs about the file's size in memory, once. V0, V1 and V2
    caffemodels and NVCaffe fp16 ``raw_data`` are read.

    Parameters
    ----------
    caffemodel : str or os.PathLike
        Path of the binary NetParameter.
    progress : callable, optional
        Called as ``progress(done_bytes, total_bytes)`` after each layer.

    Returns
    -------
    WeightFile
        Layer name -> list of arrays; when a name repeats, the last layer wins
        (as when Caffe copies trained layers).

    Raises
    ------
    CaffeIOError
        The file cannot be opened.
    CaffeProtoError
        The file is truncated or is not a caffemodel; the message names the
        layer and blob being read.
    """
    path = os.fspath(caffemodel)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise CaffeProtoError("caffemodel %r is empty" % path)
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            st = os.fstat(f.fileno())
    except OSError as exc:
        raise CaffeIOError("cannot read caffemodel %r: %s" % (path, exc.strerror or exc)) from exc
    view = memoryview(buf)
    out = WeightFile()
    out.path = path
    out._map = buf
    out._stat = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    out._base = np.frombuffer(buf, dtype=np.uint8, count=1).__array_interface__["data"][0]
    current = "(top level)"
    n_layers = 0
    try:
        for num, wt, a, b in _fields(view, 0, size):
            if wt != 2 or num not in (_NET_LAYERS_V1, _NET_LAYER_V2):
                continue
            n_layers += 1
            if num == _NET_LAYER_V2:
                name, blobs = _layer(view, a, b, _V2_NAME, _V2_BLOBS)
            else:
                name, blobs = _layer(view, a, b, _V1_NAME, _V1_BLOBS)
                if not blobs:
                    for n2, wt2, a2, b2 in _fields(view, a, b):
                        if n2 == _V1_V0 and wt2 == 2:
                            name0, blobs = _layer(view, a2, b2, _V0_NAME, _V0_BLOBS)
                            name = name or name0
            current = "layer %r" % name
            arrays = []
            for i, (ba, bb) in enumerate(blobs):
                current = "layer %r blobs[%d]" % (name, i)
                arrays.append(_blob(view, ba, bb))
            if name is not None and arrays:
                out[name] = arrays
            if progress is not None:
                progress(b, size)
    except _Truncated as exc:
        raise CaffeProtoError("caffemodel %r is truncated or corrupt: a field runs past the end "
                              "of the file (byte %s, while reading %s)" % (path, exc.args[0], current)) from None
    except CaffeProtoError as exc:
        raise CaffeProtoError("caffemodel %r, %s: %s" % (path, current, exc)) from None
    if n_layers == 0:
        raise CaffeProtoError("caffemodel %r contains no layers (is it a caffemodel?)" % path)
    return out


def _float16_raw_blob(array):
    """Build an NVCaffe-style fp16 BlobProto (used by tests and tools)."""
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(array.shape)
    blob.raw_data_type = caffe_pb2.FLOAT16
    blob.raw_data = np.ascontiguousarray(array, dtype="<f2").tobytes()
    return blob


