"""Fresh CPU NDArrays written without an engine round trip (shared by the converter and the data loaders)."""

import ctypes

import numpy as np

__all__ = ["available", "ndarray_rows", "new_cpu_ndarray"]

_CREATE_ARGS = {}        # (shape, dtype, shared) -> the ctypes arguments of MXNDArrayCreateEx
_MXAPI = None            # MXNet's ctypes entry points, imported on first use


def _api():
    """MXNet's ctypes entry points used here, or ``False`` in an MXNet laid out otherwise."""
    global _MXAPI
    if _MXAPI is None:
        try:
            from mxnet.base import _LIB, NDArrayHandle, mx_uint
            from mxnet.ndarray.ndarray import _DTYPE_NP_TO_MX, NDArray
        except ImportError:  # pragma: no cover - another MXNet layout
            _MXAPI = False
        else:
            _MXAPI = (_LIB, NDArrayHandle, mx_uint, _DTYPE_NP_TO_MX, NDArray)
    return _MXAPI


def available():
    """Whether this MXNet exposes what :func:`new_cpu_ndarray` and :func:`ndarray_rows` need."""
    return bool(_api())


def new_cpu_ndarray(shape, dtype, shared=False):
    """A new, uninitialised CPU (or ``cpu_shared``) NDArray and the address of its memory.

    Calls ``MXNDArrayCreateEx`` with cached ctypes arguments: a fresh NDArray has nothing pending
    on it, so its memory can be written directly, without an engine round trip. Returns
    ``(ndarray, address)``, or ``None`` when this MXNet build does not expose what is needed.
    """
    if not _api():  # pragma: no cover
        return None
    _LIB, NDArrayHandle, mx_uint, _DTYPE_NP_TO_MX, NDArray = _MXAPI
    key = (shape, dtype, shared)
    args = _CREATE_ARGS.get(key)
    if args is None:
        shape, dtype = tuple(shape), np.dtype(dtype)
        if dtype.type not in _DTYPE_NP_TO_MX:
            return None
        if len(_CREATE_ARGS) > 256:
            _CREATE_ARGS.clear()
        args = _CREATE_ARGS[key] = ((mx_uint * len(shape))(*shape), mx_uint(len(shape)),
                                    5 if shared else 1, _DTYPE_NP_TO_MX[dtype.type])
    handle = NDArrayHandle()
    if _LIB.MXNDArrayCreateEx(args[0], args[1], args[2], 0, 0, args[3], ctypes.byref(handle)):
        return None
    out = NDArray(handle)   # owns the handle from here on
    ptr = ctypes.c_void_p()
    if _LIB.MXNDArrayGetData(handle, ctypes.byref(ptr)):  # pragma: no cover
        return None
    return out, ptr.value


def ndarray_rows(array, start, stop):
    """Rows ``start:stop`` of a CPU NDArray as an NDArray over the same memory
    (``MXNDArraySlice``, without the Python indexing machinery); ``None`` when unavailable."""
    if not _api():  # pragma: no cover
        return None
    _LIB, NDArrayHandle, mx_uint, _, NDArray = _MXAPI
    handle = NDArrayHandle()
    if _LIB.MXNDArraySlice(array.handle, mx_uint(start), mx_uint(stop), ctypes.byref(handle)):
        return None  # pragma: no cover
    return NDArray(handle)
