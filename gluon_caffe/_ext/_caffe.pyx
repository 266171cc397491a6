# cython: language_level=3, boundscheck=False, wraparound=False
# distutils: language = c++
"""The Python face of libcaffe: one layer (LayerRunner) and one whole net (NetRunner) on numpy arrays."""

import threading

import numpy as np

cimport numpy as cnp
from cpython.ref cimport PyObject, Py_INCREF
from libc.string cimport memcpy, memset
from libcpp cimport bool
from libcpp.string cimport string
from libcpp.vector cimport vector

from gluon_caffe._ext.libcaffe cimport (
    LayerParameter, NetParameter, LayerRunner as CLayerRunner, NetRunner as CNetRunner, Shapes,
    set_error_factory, init_logging, set_log_level as c_set_log_level, log_level as c_log_level,
    set_random_seed as c_set_random_seed, protobuf_version, layer_types as c_layer_types,
    parse_layer_text, parse_net_text, make_layer_runner, make_net_runner,
    net_text_to_binary as c_net_text_to_binary,
)

from gluon_caffe import errors as _errors

cnp.import_array()

_PHASES = {"train": 0, "test": 1}
_PHASE_NAMES = {0: "train", 1: "test"}
_DTYPES = {np.dtype(np.float32): False, np.dtype(np.float64): True}


def _make_error(kind, message, check, source, context):
    """Build the Python exception for a C++ error (called from bridge.hpp)."""
    if kind == "check":
        return _errors.CaffeCheckError(message, check=check, source=source, context=context)
    cls = {
        "proto": _errors.CaffeProtoError,
        "shape": _errors.CaffeShapeError,
        "io": _errors.CaffeIOError,
        "unsupported": _errors.UnsupportedLayerError,
        "key": KeyError,
    }.get(kind, _errors.CaffeError)
    return cls(message)


set_error_factory(<PyObject*>_make_error)
init_logging()


# ------------------------------------------------------------------ module functions
def set_log_level(level):
    """Route libcaffe's glog output to stderr from `level` up: INFO, WARNING, ERROR, or None (silent)."""
    names = {"INFO": 0, "WARNING": 1, "ERROR": 2, None: 3, "OFF": 3}
    key = level.upper() if isinstance(level, str) else level
    if key not in names:
        raise ValueError("log level must be INFO, WARNING, ERROR or None, got %r" % (level,))
    c_set_log_level(names[key])


def get_log_level():
    """The current glog level set by :func:`set_log_level` (None when silent)."""
    return {0: "INFO", 1: "WARNING", 2: "ERROR"}.get(c_log_level())


def set_random_seed(unsigned int seed):
    """Seed Caffe's RNG (fillers, Dropout) for the calling thread."""
    c_set_random_seed(seed)


def layer_types():
    """The layer types compiled into libcaffe, sorted."""
    return sorted(t.decode() for t in c_layer_types())


def net_text_to_binary(text):
    """A NetParameter's prototxt text as wire-format bytes (protobuf's C++ parser), or None when
    it does not parse with libcaffe's caffe.proto (the caller then parses it in Python)."""
    cdef string out
    if not c_net_text_to_binary(_bytes(text), &out):
        return None
    return <bytes>out


def protobuf_runtime_version():
    """The C++ protobuf version libcaffe and the bridge were compiled against."""
    cdef int pb = protobuf_version()
    return "%d.%d.%d" % (pb // 1000000, pb // 1000 % 1000, pb % 1000)


# ------------------------------------------------------------------ helpers
cdef Shapes _to_shapes(shapes) except *:
    cdef Shapes out
    cdef vector[int] one
    for s in shapes:
        one.clear()
        for d in s:
            if d < 0:
                raise _errors.CaffeShapeError("negative dimension in shape %r" % (tuple(s),))
            one.push_back(d)
        out.push_back(one)
    return out


cdef list _from_shapes(Shapes shapes):
    return [tuple(s) for s in shapes]


cdef object _view(void* ptr, shape, dtype, object owner):
    """A numpy array over memory owned by `owner` (kept alive by the array)."""
    cdef int nd = len(shape)
    cdef cnp.npy_intp dims[32]
    if nd > 32:
        raise _errors.CaffeShapeError("blob has %d axes (at most 32)" % nd)
    for i in range(nd):
        dims[i] = shape[i]
    cdef int typenum = cnp.NPY_FLOAT64 if np.dtype(dtype) == np.float64 else cnp.NPY_FLOAT32
    arr = cnp.PyArray_SimpleNewFromData(nd, dims, typenum, ptr)
    Py_INCREF(owner)
    cnp.PyArray_SetBaseObject(<cnp.ndarray>arr, owner)
    return arr


cdef string _bytes(text) except *:
    if isinstance(text, bytes):
        return text
    return str(text).encode("utf-8")


def _dtype_of(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _DTYPES:
        raise _errors.CaffeShapeError(
            "unsupported dtype %r: Caffe computes in float32 or float64" % (dtype,))
    return dt


def _phase_of(phase):
    key = phase.lower() if isinstance(phase, str) else phase
    if key not in _PHASES:
        raise ValueError("phase must be 'train' or 'test', got %r" % (phase,))
    return _PHASES[key]


# ------------------------------------------------------------------ one layer
cdef class LayerRunner:
    """One Caffe layer, set up for given input shapes, run on numpy arrays.

    Parameters
    ----------
    prototxt : str
        The layer as ``layer { type: "InnerProduct" ... }`` (``layers {}`` V1 too) or as bare
        LayerParameter fields (``type: "TanH"``), the form the old MXNet CaffeOp took.
    dtype : {'float32', 'float64'}
    phase : {'test', 'train'}

    Notes
    -----
    Inputs are used in place (zero copy) when they are C-contiguous arrays of the runner's dtype.
    ``params`` and ``param_diffs`` are views of Caffe's own memory; writing to them sets the weights.
    One runner serves one thread at a time (calls are serialised by a lock).
    """

    cdef CLayerRunner* runner
    cdef readonly object dtype
    cdef object _lock

    def __cinit__(self, prototxt, dtype="float32", phase="test"):
        self.runner = NULL
        self.dtype = _dtype_of(dtype)
        self._lock = threading.Lock()
        cdef LayerParameter param = parse_layer_text(_bytes(prototxt))
        cdef int ph = _phase_of(phase)
        self.runner = make_layer_runner(param, _DTYPES[self.dtype])
        self.runner.set_phase(ph)

    def __dealloc__(self):
        if self.runner != NULL:
            del self.runner
            self.runner = NULL

    @property
    def type(self):
        """Caffe's layer type, e.g. ``"InnerProduct"``."""
        return self.runner.type().decode()

    @property
    def name(self):
        """The layer's name from the prototxt (may be empty)."""
        return self.runner.name().decode()

    @property
    def num_inputs_range(self):
        """(min, max) inputs the layer accepts; max is -1 when unbounded."""
        exact = self.runner.exact_num_bottoms()
        if exact >= 0:
            return exact, exact
        return max(self.runner.min_num_bottoms(), 0), self.runner.max_num_bottoms()

    @property
    def num_outputs_range(self):
        """(min, max) outputs the layer produces; max is -1 when unbounded."""
        exact = self.runner.exact_num_tops()
        if exact >= 0:
            return exact, exact
        return max(self.runner.min_num_tops(), 0), self.runner.max_num_tops()

    @property
    def is_set_up(self):
        return self.runner.is_set_up()

    def setup(self, bottom_shapes, num_outputs=None):
        """Set the layer up for inputs of `bottom_shapes`; return the output shapes.

        `num_outputs` defaults to the layer's exact count, else its minimum (at least 1).
        """
        if num_outputs is None:
            lo, hi = self.num_outputs_range
            num_outputs = max(lo, 1) if hi != 0 else 0
        cdef Shapes shapes = _to_shapes(bottom_shapes)
        with self._lock:
            self.runner.setup(shapes, num_outputs)
        return _from_shapes(self.runner.top_shapes())

    def reshape(self, bottom_shapes):
        """Adapt to new input shapes; return the output shapes."""
        cdef Shapes shapes = _to_shapes(bottom_shapes)
        with self._lock:
            return _from_shapes(self.runner.reshape(shapes))

    @property
    def top_shapes(self):
        return _from_shapes(self.runner.top_shapes())

    @property
    def param_shapes(self):
        """Shapes of the parameter blobs (weights, bias, ...), known after setup."""
        return _from_shapes(self.runner.param_shapes())

    @property
    def params(self):
        """The parameter blobs as writable numpy views of Caffe's memory."""
        shapes = self.param_shapes
        return [_view(self.runner.param_data(i), shapes[i], self.dtype, self) for i in range(len(shapes))]

    @property
    def param_diffs(self):
        """The parameter gradients (Caffe accumulates into them) as numpy views."""
        shapes = self.param_shapes
        return [_view(self.runner.param_diff(i), shapes[i], self.dtype, self) for i in range(len(shapes))]

    @property
    def param_learnable(self):
        """Per parameter blob: does backward compute its gradient (lr_mult != 0)?"""
        return [self.runner.param_propagate_down(i) for i in range(self.runner.num_params())]

    def set_param_learnable(self, int index, bool value):
        self.runner.set_param_propagate_down(index, value)

    def zero_param_diffs(self):
        self.runner.zero_param_diffs()

    def loss_weight(self, int top=0):
        """The loss weight Caffe gives output `top` (1 for a loss layer's first top by default)."""
        return self.runner.loss_weight(top)

    @property
    def phase(self):
        """'train' or 'test'; switching is allowed at any time (Dropout, BatchNorm follow it)."""
        return _PHASE_NAMES[self.runner.phase()]

    @phase.setter
    def phase(self, value):
        cdef int ph = _phase_of(value)
        with self._lock:
            self.runner.set_phase(ph)

    cdef list _inputs(self, arrays, what):
        out = []
        for i, a in enumerate(arrays):
            arr = np.asarray(a)
            if arr.dtype != self.dtype:
                raise _errors.CaffeShapeError(
                    "layer %r (%s): %s %d has dtype %s, the layer computes in %s"
                    % (self.name, self.type, what, i, arr.dtype, self.dtype))
            # ascontiguousarray would turn a loss layer's 0-d output into shape (1,).
            out.append(arr if arr.flags.c_contiguous else np.ascontiguousarray(arr).reshape(arr.shape))
        return out

    def forward(self, *bottoms):
        """Run Forward on `bottoms`; return the outputs as new numpy arrays."""
        cdef list ins = self._inputs(bottoms, "input")
        cdef vector[void*] bvec, tvec
        cdef Shapes shapes = _to_shapes([a.shape for a in ins])
        cdef cnp.ndarray arr
        with self._lock:
            if not self.runner.is_set_up():
                raise _errors.CaffeError("layer %r (%s): call setup() before forward()"
                                         % (self.name, self.type))
            tops = [np.empty(s, dtype=self.dtype) for s in _from_shapes(self.runner.reshape(shapes))]
            for arr in ins:
                bvec.push_back(cnp.PyArray_DATA(arr))
            for arr in tops:
                tvec.push_back(cnp.PyArray_DATA(arr))
            with nogil:
                self.runner.forward(bvec, tvec)
        return tops

    def backward(self, bottoms, tops, top_diffs, propagate_down=None, accumulate=False):
        """Run Backward; return the input gradients (None where not propagated).

        Parameter gradients land in :attr:`param_diffs`: zeroed first unless `accumulate`,
        in which case they add up across calls as in Caffe.
        """
        cdef list b = self._inputs(bottoms, "input")
        cdef list t = self._inputs(tops, "output")
        cdef list td = self._inputs(top_diffs, "output gradient")
        if propagate_down is None:
            propagate_down = [True] * len(b)
        cdef vector[void*] bvec, tvec, tdvec, bdvec
        cdef vector[bool] down
        cdef cnp.ndarray arr
        diffs = [np.zeros(a.shape, dtype=self.dtype) if p else None for a, p in zip(b, propagate_down)]
        for ts, ds in zip(t, td):
            if ts.shape != ds.shape:
                raise _errors.CaffeShapeError(
                    "layer %r (%s): output gradient shape %r differs from output shape %r"
                    % (self.name, self.type, ds.shape, ts.shape))
        for arr in b:
            bvec.push_back(cnp.PyArray_DATA(arr))
        for arr in t:
            tvec.push_back(cnp.PyArray_DATA(arr))
        for arr in td:
            tdvec.push_back(cnp.PyArray_DATA(arr))
        for d in diffs:
            if d is None:
                bdvec.push_back(NULL)
                down.push_back(False)
            else:
                arr = d
                bdvec.push_back(cnp.PyArray_DATA(arr))
                down.push_back(True)
        with self._lock:
            self.runner.reshape(_to_shapes([a.shape for a in b]))
            if [tuple(s) for s in self.runner.top_shapes()] != [a.shape for a in t]:
                raise _errors.CaffeShapeError(
                    "layer %r (%s): outputs have shapes %r, expected %r"
                    % (self.name, self.type, [a.shape for a in t], self.top_shapes))
            if not accumulate:
                self.runner.zero_param_diffs()
            with nogil:
                self.runner.backward(bvec, tvec, tdvec, bdvec, down)
        return diffs

    # -------------------------------------------------------------- for gluon_caffe.nn
    def allow_backward(self, int bottom):
        """Can Caffe compute a gradient for input `bottom`? Loss layers refuse their labels."""
        return self.runner.allow_force_backward(bottom)

    @property
    def param_lr_mults(self):
        """Per parameter blob, lr_mult as the layer sees it after setup (BatchNorm: 0 for its statistics)."""
        return [self.runner.param_lr_mult(i) for i in range(self.runner.num_params())]

    @property
    def param_decay_mults(self):
        """Per parameter blob, decay_mult as the layer sees it after setup."""
        return [self.runner.param_decay_mult(i) for i in range(self.runner.num_params())]

    cdef int _check_sizes(self, what, sizes, Shapes actual) except -1:
        cdef size_t i, j
        cdef long count
        if len(sizes) != actual.size():
            raise _errors.CaffeShapeError("layer %r (%s): expected %d %s, got %d"
                                          % (self.name, self.type, actual.size(), what, len(sizes)))
        for i in range(actual.size()):
            count = 1
            for j in range(actual[i].size()):
                count *= actual[i][j]
            if sizes[i] != count:
                raise _errors.CaffeShapeError(
                    "layer %r (%s): %s %d holds %d elements, Caffe's blob holds %d"
                    % (self.name, self.type, what, i, sizes[i], count))
        return 0

    cdef int _set_params(self, param_ptrs, param_diff_ptrs, zero_diffs) except -1:
        """Borrow every parameter blob's memory for one call (and zero diffs where asked)."""
        cdef int n = self.runner.num_params()
        cdef Shapes shapes = self.runner.param_shapes()
        cdef size_t itemsize = self.dtype.itemsize
        cdef long count
        cdef size_t addr
        if len(param_ptrs) != n:
            raise _errors.CaffeShapeError("layer %r (%s): expected %d parameter blobs, got %d"
                                          % (self.name, self.type, n, len(param_ptrs)))
        for i in range(n):
            addr = param_ptrs[i]
            if addr == 0:
                raise _errors.CaffeError("layer %r (%s): parameter blob %d has no memory"
                                         % (self.name, self.type, i))
            self.runner.set_param_data(i, <void*>addr)
        if param_diff_ptrs is None:
            return 0
        for i in range(n):
            addr = param_diff_ptrs[i]
            self.runner.set_param_propagate_down(i, addr != 0)
            if addr == 0:
                continue
            self.runner.set_param_diff(i, <void*>addr)
            if zero_diffs[i]:
                count = 1
                for d in shapes[i]:
                    count *= d
                memset(<void*>addr, 0, count * itemsize)
        return 0

    def forward_ptrs(self, bottom_shapes, bottom_ptrs, top_ptrs, top_sizes, param_ptrs):
        """Forward on raw memory: the zero-copy path of gluon_caffe.nn's operator.

        Every address must point at C-contiguous memory of the runner's dtype that stays valid
        for the call; `top_sizes` are the element counts the caller allocated (checked against
        Caffe's top shapes); parameter blobs borrow `param_ptrs` for the call. Returns the loss.
        """
        cdef Shapes shapes = _to_shapes(bottom_shapes)
        cdef vector[void*] bvec, tvec
        cdef double loss
        cdef size_t addr
        for addr in bottom_ptrs:
            bvec.push_back(<void*>addr)
        for addr in top_ptrs:
            tvec.push_back(<void*>addr)
        with self._lock:
            if not self.runner.is_set_up():
                raise _errors.CaffeError("layer %r (%s): call setup() before forward"
                                         % (self.name, self.type))
            self._check_sizes("outputs", top_sizes, self.runner.reshape(shapes))
            self._set_params(param_ptrs, None, None)
            with nogil:
                loss = self.runner.forward(bvec, tvec)
        return loss

    def backward_ptrs(self, bottom_shapes, bottom_ptrs, top_ptrs, top_diff_ptrs, bottom_diff_ptrs,
                      param_ptrs, param_diff_ptrs, zero_param_diffs):
        """Backward on raw memory (see :meth:`forward_ptrs`).

        A 0 in `bottom_diff_ptrs` skips that input; a 0 in `param_diff_ptrs` skips that blob's
        gradient. Parameter gradients land in `param_diff_ptrs`, zeroed first where
        `zero_param_diffs` says so and otherwise added to, as Caffe accumulates.
        """
        cdef Shapes shapes = _to_shapes(bottom_shapes)
        cdef vector[void*] bvec, tvec, tdvec, bdvec
        cdef vector[bool] down
        cdef size_t addr
        for addr in bottom_ptrs:
            bvec.push_back(<void*>addr)
        for addr in top_ptrs:
            tvec.push_back(<void*>addr)
        for addr in top_diff_ptrs:
            tdvec.push_back(<void*>addr)
        for addr in bottom_diff_ptrs:
            bdvec.push_back(<void*>addr if addr else NULL)
            down.push_back(addr != 0)
        with self._lock:
            if not self.runner.is_set_up():
                raise _errors.CaffeError("layer %r (%s): call setup() before backward"
                                         % (self.name, self.type))
            self.runner.reshape(shapes)
            self._set_params(param_ptrs, param_diff_ptrs, zero_param_diffs)
            with nogil:
                self.runner.backward(bvec, tvec, tdvec, bdvec, down)

    def __repr__(self):
        return "<LayerRunner %r (%s) %s %s>" % (self.name, self.type, self.dtype, self.phase)


# ------------------------------------------------------------------ a whole net
cdef class NetRunner:
    """A whole Caffe Net (libcaffe's own), the reference every comparison runs against.

    Use :class:`gluon_caffe.CaffeNet`, which adds file handling, rather than this directly.
    """

    cdef CNetRunner* net
    cdef readonly object dtype
    cdef readonly str phase
    cdef object _lock

    def __cinit__(self, text, origin="prototxt", dtype="float32", phase="test"):
        self.net = NULL
        self.dtype = _dtype_of(dtype)
        self._lock = threading.Lock()
        cdef int ph = _phase_of(phase)
        self.phase = _PHASE_NAMES[ph]
        cdef NetParameter param = parse_net_text(_bytes(text), _bytes(origin))
        self.net = make_net_runner(param, _DTYPES[self.dtype], ph)

    def __dealloc__(self):
        if self.net != NULL:
            del self.net
            self.net = NULL

    @property
    def name(self):
        return self.net.name().decode()

    @property
    def blob_names(self):
        return [n.decode() for n in self.net.blob_names()]

    @property
    def layer_names(self):
        return [n.decode() for n in self.net.layer_names()]

    def layer_type(self, layer):
        return self.net.layer_type(_bytes(layer)).decode()

    @property
    def input_names(self):
        return [n.decode() for n in self.net.input_names()]

    @property
    def output_names(self):
        return [n.decode() for n in self.net.output_names()]

    def blob_shape(self, name):
        return tuple(self.net.blob_shape(_bytes(name)))

    def blob(self, name, diff=False):
        """A numpy view of a blob's data (or diff)."""
        cdef string key = _bytes(name)
        shape = tuple(self.net.blob_shape(key))
        ptr = self.net.blob_diff(key) if diff else self.net.blob_data(key)
        return _view(ptr, shape, self.dtype, self)

    def set_input(self, name, value):
        """Reshape blob `name` to `value`'s shape and copy `value` in."""
        arr = np.ascontiguousarray(value, dtype=self.dtype)
        cdef string key = _bytes(name)
        cdef vector[int] shape
        for d in arr.shape:
            shape.push_back(d)
        self.net.reshape_blob(key, shape)
        self.blob(name)[...] = arr

    def reshape(self):
        with self._lock:
            self.net.reshape()

    def forward(self):
        """Run Forward over the whole net; return the loss."""
        cdef double loss
        with self._lock:
            with nogil:
                loss = self.net.forward()
        return loss

    def clear_diffs(self):
        """Zero the parameter gradients (blob diffs are left to the layers)."""
        self.net.clear_diffs()

    def blob_loss_weight(self, name):
        """The loss weight Caffe gives blob `name` (nonzero for loss outputs)."""
        return self.net.blob_loss_weight(_bytes(name))

    def backward(self):
        with self._lock:
            with nogil:
                self.net.backward()

    def num_params(self, layer):
        return self.net.num_params(_bytes(layer))

    def param(self, layer, int i, diff=False):
        """A numpy view of parameter blob `i` of `layer` (or of its gradient)."""
        cdef string key = _bytes(layer)
        shape = tuple(self.net.param_shape(key, i))
        ptr = self.net.param_diff(key, i) if diff else self.net.param_data(key, i)
        return _view(ptr, shape, self.dtype, self)

    def copy_trained(self, path):
        with self._lock:
            self.net.copy_trained(_bytes(path))

    def save(self, path):
        with self._lock:
            self.net.save(_bytes(path))
