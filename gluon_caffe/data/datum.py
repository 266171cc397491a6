"""Caffe's Datum record: numpy arrays to and from Datum, and decoding encoded images as Caffe does."""

import itertools

import numpy as np
from google.protobuf.message import DecodeError

from ..errors import CaffeError, CaffeIOError, CaffeShapeError
from ..proto import caffe_pb2

__all__ = ["array_to_datum", "datum_to_array", "parse_datum", "parse_datum_batch", "datum_layout",
           "decode_image", "encode_image"]

# The decode modes and the cv::imdecode flag Caffe uses for each (io.cpp): "native" is
# DecodeDatumToCVMatNative (IMREAD_UNCHANGED), "color"/"gray" are force_color/force_gray.
_DECODE_FLAGS = {"native": -1, "color": 1, "gray": 0}


def _cv2():
    """OpenCV's Python module, imported on first use (only encoded images need it)."""
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - the test environment has it
        raise CaffeError(
            "encoded (JPEG/PNG) images need OpenCV's Python bindings: "
            "pip install opencv-python-headless==4.6.0.66 (%s)" % e) from None
    return cv2


def decode_image(buf, mode="native", what="encoded image"):
    """Decode JPEG/PNG/... bytes exactly as Caffe's ``cv::imdecode`` call does.

    Parameters
    ----------
    buf : bytes or numpy.ndarray
        The encoded file contents.
    mode : {'native', 'color', 'gray'}
        ``native`` keeps the file's channels (Caffe without ``force_*``), ``color`` gives
        3 channels (``force_color``), ``gray`` one (``force_gray``).
    what : str
        How errors name the image (e.g. the record key).

    Returns
    -------
    numpy.ndarray
        uint8, CHW, channels in OpenCV's BGR(A) order as Caffe sees them.

    Notes
    -----
    opencv-python-headless 4.6.0.66 (libjpeg-turbo 2.1.2) decodes bit-identically to Debian 12's
    OpenCV 4.6 (libjpeg-turbo 2.1.5) that libcaffe links; the tests check it against Caffe's
    Data layer for baseline, progressive and restart-marker JPEGs and PNG.
    """
    if mode not in _DECODE_FLAGS:
        raise ValueError("decode mode must be one of %s, got %r" % (sorted(_DECODE_FLAGS), mode))
    cv2 = _cv2()
    arr = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf.reshape(-1)
    img = cv2.imdecode(arr, _DECODE_FLAGS[mode]) if arr.size else None
    if img is None:
        raise CaffeIOError("%s: could not decode %d bytes as an image" % (what, arr.size))
    if img.dtype != np.uint8:
        # Caffe CHECKs the same thing ("Image data type must be unsigned byte").
        raise CaffeShapeError("%s: decodes to %s pixels; Caffe takes 8-bit images only" % (what, img.dtype))
    if img.ndim == 2:
        return img[None, :, :]
    return img.transpose(2, 0, 1)


def encode_image(chw, ext=".png", what="image"):
    """Encode a uint8 CHW (BGR) array with OpenCV, as Caffe's ``cv::imencode`` would.

    Returns
    -------
    bytes
    """
    cv2 = _cv2()
    chw = np.asarray(chw)
    if chw.dtype != np.uint8:
        raise CaffeShapeError("%s: only uint8 images can be encoded, got %s" % (what, chw.dtype))
    hwc = chw[0] if chw.shape[0] == 1 else np.ascontiguousarray(chw.transpose(1, 2, 0))
    ok, out = cv2.imencode(ext if ext.startswith(".") else "." + ext, hwc)
    if not ok:
        raise CaffeIOError("%s: OpenCV could not encode it as %r" % (what, ext))
    return out.tobytes()


def array_to_datum(array, label=0, encoded=None):
    """Build a Datum from one image.

    Parameters
    ----------
    array : numpy.ndarray
        CHW, or HW for one channel. uint8 goes to ``data`` (raw bytes); floating point goes to
        ``float_data``; other integer types must hold values in 0..255.
    label : int
    encoded : {None, 'png', 'jpg', ...}
        Store the image encoded in this format (``encoded: true``) instead of raw.

    Returns
    -------
    caffe_pb2.Datum
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or 0 in a.shape:
        raise CaffeShapeError("a Datum holds one CHW (or HW) image, got shape %r" % (a.shape,))
    datum = caffe_pb2.Datum(label=int(label))
    if a.dtype.kind == "f":
        if encoded:
            raise CaffeShapeError("float images cannot be stored encoded")
        datum.channels, datum.height, datum.width = a.shape
        datum.float_data.extend(a.astype(np.float32, copy=False).ravel().tolist())
        return datum
    if a.dtype != np.uint8:
        if a.dtype.kind not in "iub" or (a.size and (a.min() < 0 or a.max() > 255)):
            raise CaffeShapeError("raw Datum bytes need uint8 values 0..255, got %s" % a.dtype)
        a = a.astype(np.uint8)
    if encoded:
        datum.data = encode_image(a, encoded)
        datum.encoded = True
        return datum
    datum.channels, datum.height, datum.width = a.shape
    datum.data = np.ascontiguousarray(a).tobytes()
    datum.encoded = False  # set explicitly, as Caffe's CVMatToDatum does: same bytes on disk
    return datum


def parse_datum(value, what="record"):
    """Parse serialized Datum bytes, naming `what` (e.g. the key) when they are not a Datum."""
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise CaffeIOError("%s: not a valid Datum (corrupt or truncated: %s)" % (what, e)) from None
    return datum


def datum_to_array(datum, decode="native", what="record"):
    """The image a Datum holds, as Caffe's DataTransformer sees it.

    Parameters
    ----------
    datum : caffe_pb2.Datum
    decode : {'native', 'color', 'gray', False}
        How to decode an encoded Datum (see :func:`decode_image`); ``False`` returns its bytes
        as a 1-D uint8 array (for :class:`CaffeTransform` to decode with its ``force_*``).
    what : str
        How errors name the record.

    Returns
    -------
    numpy.ndarray
        uint8 CHW for raw and decoded bytes, float32 CHW for ``float_data``.
    """
    if datum.encoded:
        if not decode:
            return np.frombuffer(datum.data, dtype=np.uint8)
        return decode_image(datum.data, decode, what)
    shape = (datum.channels, datum.height, datum.width)
    count = shape[0] * shape[1] * shape[2]
    if min(shape) <= 0:
        raise CaffeIOError("%s: Datum has shape %r" % (what, shape))
    if datum.data:
        if len(datum.data) != count:
            raise CaffeIOError("%s: Datum says %dx%dx%d = %d bytes but holds %d (truncated or corrupt)"
                               % (what, shape[0], shape[1], shape[2], count, len(datum.data)))
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape)
    if len(datum.float_data) != count:
        raise CaffeIOError("%s: Datum says %dx%dx%d = %d floats but holds %d (truncated or corrupt)"
                           % (what, shape[0], shape[1], shape[2], count, len(datum.float_data)))
    return np.array(datum.float_data, dtype=np.float32).reshape(shape)


# ---------------------------------------------------------------------------------------------
# Batches of serialized Datums, parsed from the wire format without a protobuf object per record
# ---------------------------------------------------------------------------------------------
# Datum's fields (caffe.proto): channels=1, height=2, width=3 (varint), data=4 (bytes),
# label=5 (varint), float_data=6 (float), encoded=7 (bool).
_VARINT_FIELDS = {1: "channels", 2: "height", 3: "width", 5: "label", 7: "encoded"}


def _read_varint(buf, pos):
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def datum_layout(value):
    """Where a raw (uint8) Datum's fields lie in its serialized bytes.

    Parameters
    ----------
    value : bytes
        One serialized Datum.

    Returns
    -------
    tuple or None
        ``(shape, data_start, label_start, label_end)``: the CHW shape, the offset of the pixel
        bytes (``C*H*W`` of them) and the span of the label's varint (empty when the label is
        absent). ``None`` when the record is anything else (encoded, ``float_data``, a field
        given twice, an unknown field, malformed): such records take protobuf's own parser.
    """
    fields = {}
    data = label = None
    pos = 0
    try:
        while pos < len(value):
            tag, pos = _read_varint(value, pos)
            number, wire = tag >> 3, tag & 7
            if number in _VARINT_FIELDS and wire == 0:
                start = pos
                v, pos = _read_varint(value, pos)
                if number in fields:
                    return None
                fields[number] = v
                if number == 5:
                    label = (start, pos)
            elif number == 4 and wire == 2:
                n, pos = _read_varint(value, pos)
                if data is not None or pos + n > len(value):
                    return None
                data = (pos, n)
                pos += n
            else:
                return None
    except ValueError:
        return None
    shape = (fields.get(1, 0), fields.get(2, 0), fields.get(3, 0))
    if data is None or fields.get(7, 0) or min(shape) <= 0 or shape[0] * shape[1] * shape[2] != data[1]:
        return None
    label = label or (pos, pos)
    return shape, data[0], label[0], label[1]


def _varint_column(rows, start, end):
    """Decode the varints at columns [start, end) of each row (int32, as protobuf truncates);
    also whether each row's bytes form exactly one varint of that length."""
    if start == end:
        return np.zeros(len(rows), np.int32), np.ones(len(rows), bool)
    if end - start == 1:   # labels 0..127: the common case
        b = rows[:, start]
        return b.astype(np.int32), b < 0x80
    b = rows[:, start:end]
    ok = (b[:, -1] < 0x80) & (b[:, :-1] >= 0x80).all(axis=1)
    value = np.zeros(len(rows), np.uint64)
    for k in range(end - start):
        value |= (b[:, k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
    return value.astype(np.uint32).view(np.int32), ok


class JoinedValues:
    """Serialized records stored one after the other in one ``bytes``: a sequence of the records
    (each item a copy) that :func:`parse_datum_batch` reads without joining them again.

    Parameters
    ----------
    blob : bytes
        The records, concatenated.
    lengths : sequence of int
        Each record's length, in order.
    """

    __slots__ = ("blob", "lengths", "_starts")

    def __init__(self, blob, lengths):
        self.blob, self.lengths = blob, list(lengths)
        if sum(self.lengths) != len(blob):
            raise ValueError("JoinedValues: lengths add up to %d, the blob has %d bytes"
                             % (sum(self.lengths), len(blob)))
        self._starts = None

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, i):
        if self._starts is None:
            self._starts = [0] + list(itertools.accumulate(self.lengths))
        i = range(len(self.lengths))[i]
        return self.blob[self._starts[i]:self._starts[i + 1]]

    def __iter__(self):
        return (self[i] for i in range(len(self.lengths)))


# serialized length -> (datum_layout, the columns outside pixels and label, their bytes): what
# the first record of that length looked like, so that later batches skip the scan.
_LAYOUTS = {}


def parse_datum_batch(values, what=None):
    """Parse many serialized Datums at once, as :func:`parse_datum` + :func:`datum_to_array` would.

    Raw uint8 records of one layout (Caffe writes every record of a database the same way) are
    parsed with a handful of numpy operations on the whole batch: the first record of each
    serialized length is scanned once (:func:`datum_layout`), every other record of that
    length is checked to have the same bytes outside its pixels and label, and the pixels and
    labels are read as columns. Anything else (encoded, ``float_data``, another layout) goes
    through protobuf, record by record.

    Parameters
    ----------
    values : sequence of bytes or JoinedValues
        Serialized Datums (:class:`JoinedValues` when they were read into one ``bytes``).
    what : callable, optional
        ``what(i)`` names record `i` in error messages (e.g. by its key).

    Returns
    -------
    images : numpy.ndarray or list
        ``(N, C, H, W)`` uint8 when every record is raw with one shape, else a list with one
        entry per record: a CHW array (uint8 or float32) or, for an encoded record, its bytes as
        a 1-D uint8 array (decode them with :func:`decode_image`).
    labels : numpy.ndarray
        int32, one per record.
    encoded : numpy.ndarray
        bool, one per record: whether the entry is encoded bytes.

    Raises
    ------
    CaffeIOError
        A record is not a Datum, or its pixels do not fill its shape (named by `what`).
    """
    what = what or (lambda i: "record %d" % i)
    n = len(values)
    labels = np.zeros(n, np.int32)
    encoded = np.zeros(n, bool)
    if n == 0:
        return np.zeros((0, 0, 0, 0), np.uint8), labels, encoded
    if isinstance(values, JoinedValues):
        blob, lengths = np.frombuffer(values.blob, np.uint8), values.lengths
    else:
        blob, lengths = np.frombuffer(b"".join(values), np.uint8), list(map(len, values))
    uniform = lengths.count(lengths[0]) == n
    slow = []
    if uniform and lengths[0] in _LAYOUTS:
        # The common case, all in numpy: one layout, seen before, every record matching it.
        (shape, d0, l0, l1), fixed, head = _LAYOUTS[lengths[0]]
        rows = blob.reshape(n, -1)
        label, ok = _varint_column(rows, l0, l1)
        if ok.all() and (rows[:, fixed] == head).all():
            return rows[:, d0:d0 + shape[0] * shape[1] * shape[2]].reshape((n,) + shape), label, encoded
    lens = np.asarray(lengths, np.int64)
    if uniform:
        groups = [(np.arange(n), int(lens[0]))]
    else:
        starts = np.zeros(n, np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        distinct = np.unique(lens)
        # Many lengths: encoded images (or labels of every size); protobuf parses those.
        groups = [] if len(distinct) > 4 + n // 4 else [
            (np.flatnonzero(lens == length), int(length)) for length in distinct]
        if not groups:
            slow = list(range(n))
    parsed = {}      # shape -> (indices, pixel rows)
    for idx, length in groups:
        template = _LAYOUTS.get(length)
        same = None
        if template is None:
            layout = datum_layout(values[idx[0]]) if length else None
            if layout is None:
                slow.extend(idx.tolist())
                continue
        rows = blob.reshape(n, length) if uniform else blob[starts[idx, None] + np.arange(length)]
        if template is not None:   # the layout an earlier batch found for records this long
            layout, fixed, head = template
            same = (rows[:, fixed] == head).all(axis=1)
            if not same[0]:
                same = None
                layout = datum_layout(values[idx[0]]) if length else None
                if layout is None:
                    slow.extend(idx.tolist())
                    continue
        if same is None:
            shape, d0, l0, l1 = layout
            fixed = np.ones(length, bool)
            fixed[d0:d0 + shape[0] * shape[1] * shape[2]] = fixed[l0:l1] = False
            fixed = np.flatnonzero(fixed)
            head = rows[0, fixed].copy()
            if len(_LAYOUTS) > 64:
                _LAYOUTS.clear()
            _LAYOUTS[length] = (layout, fixed, head)
            same = (rows[:, fixed] == head).all(axis=1)
        shape, d0, l0, l1 = layout
        d1 = d0 + shape[0] * shape[1] * shape[2]
        ok_label = _varint_column(rows, l0, l1)
        same &= ok_label[1]
        if not same.all():
            slow.extend(idx[~same].tolist())
            idx, rows = idx[same], rows[same]
            ok_label = (ok_label[0][same], None)
        labels[idx] = ok_label[0]
        pixels = rows[:, d0:d1].reshape((len(idx),) + shape)
        if shape in parsed:
            prev = parsed[shape]
            parsed[shape] = (np.concatenate([prev[0], idx]), np.concatenate([prev[1], pixels]))
        else:
            parsed[shape] = (idx, pixels)
    if not slow and len(parsed) == 1:
        idx, pixels = next(iter(parsed.values()))
        if uniform or (len(idx) == n and (idx == np.arange(n)).all()):
            return pixels, labels, encoded
        out = np.empty_like(pixels)
        out[idx] = pixels
        return out, labels, encoded
    images = [None] * n
    for idx, pixels in parsed.values():
        for j, i in enumerate(idx.tolist()):
            images[i] = pixels[j]
    for i in slow:
        name = what(i)
        datum = parse_datum(values[i], name)
        images[i] = datum_to_array(datum, False, name)
        labels[i] = datum.label
        encoded[i] = datum.encoded
    shapes = {img.shape for img in images}
    if len(shapes) == 1 and not encoded.any() and images[0].dtype == np.uint8:
        return np.stack(images), labels, encoded
    return images, labels, encoded
