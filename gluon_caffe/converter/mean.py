"""Mean images: binaryproto <-> mx.nd.NDArray (legacy num/channels/height/width and shape{dim})."""

import os

import mxnet as mx
import numpy as np

from ..errors import CaffeIOError, CaffeProtoError
from .proto import caffe_pb2, read_blobproto
from .weights import blob_to_array

__all__ = ["load_mean", "save_mean", "mean_to_array"]


def load_mean(binaryproto, rgb=False):
    """Read a Caffe mean file into an NDArray of shape (C, H, W).

    Parameters
    ----------
    binaryproto : str or os.PathLike
        A ``BlobProto`` written by Caffe's ``compute_image_mean`` (legacy
        num/channels/height/width fields) or with ``shape { dim }``; a leading
        num of 1 is dropped.
    rgb : bool
        Reverse the channel order (Caffe's means are BGR).

    Returns
    -------
    mxnet.nd.NDArray
        float32, (C, H, W) (or the blob's own shape when it is not 4-D with num 1).

    Raises
    ------
    CaffeProtoError
        Not a BlobProto, no values, or values not matching the shape fields.
    """
    blob = read_blobproto(binaryproto)
    try:
        arr = blob_to_array(blob)
    except CaffeProtoError as exc:
        raise CaffeProtoError("mean file %r: %s" % (os.fspath(binaryproto), exc)) from None
    if arr.size == 0:
        raise CaffeProtoError("mean file %r has no values (BlobProto.data is empty)" % os.fspath(binaryproto))
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if rgb:
        if arr.ndim != 3:
            raise CaffeProtoError("mean file %r: rgb=True needs a (C, H, W) mean, got shape %s"
                                  % (os.fspath(binaryproto), arr.shape))
        arr = arr[::-1]
    return mx.nd.array(np.ascontiguousarray(arr), dtype=np.float32)


def save_mean(binaryproto, mean, legacy=True):
    """Write a mean image as a Caffe ``BlobProto`` file.

    Parameters
    ----------
    binaryproto : str or os.PathLike
        Output path.
    mean : mxnet.nd.NDArray or array-like
        (C, H, W) or (1, C, H, W) values in the channel order the model expects.
    legacy : bool
        Write num/channels/height/width (what ``compute_image_mean`` writes and
        old readers need); otherwise write ``shape { dim }``.
    """
    arr = mean.asnumpy() if isinstance(mean, mx.nd.NDArray) else np.asarray(mean)
    arr = arr.astype(np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    blob = caffe_pb2.BlobProto()
    if legacy:
        if arr.ndim != 4:
            raise ValueError("legacy mean files are 4-D; got shape %s" % (arr.shape,))
        blob.num, blob.channels, blob.height, blob.width = arr.shape
    else:
        blob.shape.dim.extend(arr.shape)
    blob.data.extend(arr.ravel())
    try:
        with open(binaryproto, "wb") as f:
            f.write(blob.SerializeToString())
    except OSError as exc:
        raise CaffeIOError("cannot write mean file %r: %s" % (os.fspath(binaryproto), exc.strerror or exc)) from exc


def mean_to_array(mean, input_shape):
    """The mean to subtract from an input of ``input_shape`` (N, C, H, W), as (1, C, h, w) float32.

    A (C, H, W) image larger than the input is center-cropped (Caffe's test
    transform takes the crop at ((H-h)/2, (W-w)/2)); per-channel values give
    (1, C, 1, 1).
    """
    if isinstance(mean, (str, os.PathLike)):
        mean = load_mean(mean)
    arr = mean.asnumpy() if isinstance(mean, mx.nd.NDArray) else np.asarray(mean, dtype=np.float32)
    arr = arr.astype(np.float32)
    c, h, w = input_shape[1], input_shape[2], input_shape[3]
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 1:
        if arr.size not in (1, c):
            raise CaffeProtoError("mean has %d values for %d input channels" % (arr.size, c))
        return np.ascontiguousarray(np.broadcast_to(arr, (c,)).reshape(1, c, 1, 1))
    if arr.ndim != 3 or arr.shape[0] != c:
        raise CaffeProtoError("mean of shape %s does not fit input of shape %s" % (arr.shape, tuple(input_shape)))
    mh, mw = arr.shape[1:]
    if mh < h or mw < w:
        raise CaffeProtoError("mean of shape %s is smaller than the input %s" % (arr.shape, tuple(input_shape)))
    top, left = (mh - h) // 2, (mw - w) // 2
    return np.ascontiguousarray(arr[None, :, top:top + h, left:left + w])
