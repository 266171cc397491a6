"""The MXNet operator behind CaffeLayer, CaffeLossBlock and gluon_caffe.sym: one Caffe layer as a CustomOp."""

import atexit
import collections
import concurrent.futures
import ctypes
import itertools
import re
import threading

import mxnet as mx
import numpy as np

from .._ext import _caffe
from .._text import read_prototxt
from ..errors import CaffeError, CaffeShapeError, UnsupportedLayerError, layer_context

__all__ = ["OP_TYPE", "LayerSpec", "BlobSpec", "describe", "setup_info", "op_kwargs", "CaffeFiller",
           "check_inputs", "mx_shape"]

#: The op_type under which the operator is registered; exported symbol JSON names it, so a process
#: loading such a file must ``import gluon_caffe`` first (MXNet then says "Cannot find custom
#: operator gluon_caffe.CaffeOp" otherwise, which names the package to import).
OP_TYPE = "gluon_caffe.CaffeOp"

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Layers that read their data themselves: their place is gluon_caffe.data, not a block.
_DATA_TYPES = {"Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData", "Input",
               "AnnotatedData", "Python", "DATA", "IMAGE_DATA", "HDF5_DATA", "MEMORY_DATA",
               "WINDOW_DATA", "DUMMY_DATA", "PYTHON"}
# Blob roles where the index-based default ("weight", "bias", "blob2", ...) would mislead.
_ROLES = {
    "BatchNorm": ("mean", "variance", "scale_factor"),
    "Bias": ("bias",),
}


def _text(prototxt):
    return read_prototxt(prototxt)[0]


def _type_in_text(text):
    m = re.search(r'\btype\s*:\s*"?(\w+)"?', text)
    return m.group(1) if m else None


def _new_runner(text, dtype="float32", phase="test"):
    """A LayerRunner, with data layers refused before Caffe would open their database."""
    kind = _type_in_text(text)
    if kind in _DATA_TYPES:
        raise UnsupportedLayerError(
            "%s: a data layer has no inputs and cannot be a block; read Caffe data with "
            "gluon_caffe.data (CaffeDataset, LMDB/LevelDB datasets)" % layer_context("", kind))
    return _caffe.LayerRunner(text, dtype=dtype, phase=phase)


def _role(layer_type, index):
    roles = _ROLES.get(layer_type)
    if roles and index < len(roles):
        return roles[index]
    return ("weight", "bias")[index] if index < 2 else "blob%d" % index


# ------------------------------------------------------------------ what a layer is
BlobSpec = collections.namedtuple("BlobSpec", "index role aux lr_mult decay_mult ndim")
BlobSpec.__new__.__defaults__ = (None,)
BlobSpec.__doc__ = """One Caffe parameter blob: its index in ``layer.blobs``, its role name, whether it
is auxiliary state (lr_mult 0: Caffe's solver never touches it; BatchNorm's statistics), its
lr_mult / decay_mult, and its number of axes as a probe set-up made it (None when unknown; a few
layers, e.g. Scale with num_axes -1, size it from the input)."""


class LayerSpec(collections.namedtuple("LayerSpec", "text type name num_data num_out blobs")):
    """A Caffe layer as the operator needs it before any input shape is known.

    Attributes
    ----------
    text : str
        The prototxt text.
    type, name : str
        Caffe's layer type and the prototxt's layer name.
    num_data, num_out : int
        Inputs and outputs.
    blobs : tuple of BlobSpec
        The parameter blobs in Caffe's order.
    """

    @property
    def context(self):
        return layer_context(self.name, self.type)

    @property
    def args(self):
        return [b for b in self.blobs if not b.aux]

    @property
    def auxs(self):
        return [b for b in self.blobs if b.aux]

    def blobs_attr(self):
        """The blob list as the operator's ``blobs`` attribute: ``"weight,bias"``, ``"mean:aux,..."``."""
        return ",".join(b.role + (":aux" if b.aux else "") for b in self.blobs)


# Candidate input shapes for learning how many blobs a layer has before the real shapes are
# known. Caffe creates blobs in LayerSetUp from the layer's parameters, not from the input
# shapes, so any shape the layer accepts gives the right count. 12 channels fit any group
# that divides it; small sizes keep the fillers cheap.
# Images first: a blob's number of axes can follow the input's (Convolution), and the blocks
# declare it before any input is seen (see BlobSpec.ndim).
_PROBES = ((2, 12, 12, 12), (2, 12), (2, 12, 40, 40), (2, 12, 12), (2, 12, 6, 6, 6), (12,))


def _probe(text, num_data, num_out):
    """A runner set up on some input shapes the layer accepts, or the last CaffeError."""
    last = None
    # Then other channel counts: a layer may fix them (InfogainLoss's matrix file).
    extra = [s for c in range(1, 33) if c != 12 for s in ((2, c), (2, c, 4, 4))]
    for shape in _PROBES + tuple(extra):
        c = shape[1] if len(shape) > 1 else shape[0]
        smaller = tuple(d // 2 if j >= 2 else d for j, d in enumerate(shape))
        # Shapes a second input may need: the same (Eltwise), smaller (Crop), per-row labels
        # (losses), per-channel (Scale, Bias), a C x C matrix (InfogainLoss).
        others = (shape, smaller, shape[:2], shape[1:2], (shape[0],), (1, 1, c, c))
        combos = itertools.product(others, repeat=num_data - 1) if num_data <= 3 else ((o,) * (num_data - 1) for o in others)
        for rest in combos:
            runner = _new_runner(text)
            try:
                runner.setup([shape] + list(rest), num_out)
            except CaffeError as e:
                last = e
                continue
            return runner
    return last


_SPECS = {}
_SPECS_LOCK = threading.Lock()

# Probes and shape inference set layers up, and set-up runs the fillers, which draw from Caffe's
# RNG of the calling thread. They run on this helper thread instead, so that after
# gluon_caffe.set_random_seed(s) the user's thread draws only for the parameters it initializes:
# the same seed gives the same weights, however many layers were probed before.
_HELPER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gluon_caffe-setup")


def _off_thread(fn, *args):
    return _HELPER.submit(fn, *args).result()


def describe(prototxt, num_data=1, num_out=1, num_weight=None):
    """Describe a Caffe layer: type, name, parameter blobs (roles, aux, lr/decay mults).

    Parameters
    ----------
    prototxt : str
        The layer (``layer { ... }``, V1 ``layers { ... }`` or bare LayerParameter fields) or a path.
    num_data, num_out : int
        Inputs and outputs the caller will connect; checked against what the layer accepts.
    num_weight : int, optional
        The number of parameter blobs the caller expects; checked against what Caffe reports.

    Returns
    -------
    LayerSpec

    Raises
    ------
    CaffeError
        Bad prototxt, a data layer, input/output counts the layer does not accept, or a
        ``num_weight`` that disagrees with Caffe.
    """
    text = _text(prototxt)
    key = (text, int(num_data), int(num_out), None if num_weight is None else int(num_weight))
    with _SPECS_LOCK:
        spec = _SPECS.get(key)
    if spec is None:
        spec = _off_thread(_describe, *key)
        with _SPECS_LOCK:
            _SPECS[key] = spec
    return spec


def _describe(text, num_data, num_out, num_weight):
    runner = _new_runner(text)
    ctx = layer_context(runner.name, runner.type)
    lo, hi = runner.num_inputs_range
    if hi == 0:
        raise UnsupportedLayerError(
            "%s: a data layer has no inputs and cannot be a block; read Caffe data with "
            "gluon_caffe.data (CaffeDataset, LMDB/LevelDB datasets)" % ctx)
    if num_data < max(lo, 1) or (hi >= 0 and num_data > hi):
        raise CaffeShapeError("%s takes %s inputs, num_data is %d" % (ctx, _range(lo, hi), num_data))
    lo, hi = runner.num_outputs_range
    if num_out < max(lo, 1) or (hi >= 0 and num_out > hi):
        raise CaffeShapeError("%s produces %s outputs, num_out is %d" % (ctx, _range(lo, hi), num_out))
    probed = _probe(text, num_data, num_out)
    if isinstance(probed, CaffeError):
        if num_weight is None:
            raise CaffeShapeError(
                "%s: cannot tell how many parameter blobs the layer has before its input shapes are "
                "known; pass num_weight (the layer rejected every probe shape: %s)" % (ctx, probed))
        # lr_mult/decay_mult as the prototxt gives them; checked against Caffe at the first setup.
        blobs = tuple(BlobSpec(i, _role(runner.type, i), runner.type == "BatchNorm",
                               0.0 if runner.type == "BatchNorm" else 1.0, 1.0)
                      for i in range(num_weight))
    else:
        blobs = tuple(BlobSpec(i, _role(probed.type, i), lr == 0, lr, dec, len(mx_shape(shape)))
                      for i, (lr, dec, shape) in enumerate(zip(probed.param_lr_mults, probed.param_decay_mults,
                                                               probed.param_shapes)))
        if num_weight is not None and num_weight != len(blobs):
            raise CaffeShapeError("%s has %d parameter blobs, num_weight is %d"
                                  % (ctx, len(blobs), num_weight))
    return LayerSpec(text, runner.type, runner.name, num_data, num_out, blobs)


def _range(lo, hi):
    if lo == hi:
        return "exactly %d" % lo
    if hi < 0:
        return "at least %d" % max(lo, 1)
    return "%d to %d" % (max(lo, 1), hi)


# ------------------------------------------------------------------ set-ups for given shapes
SetupInfo = collections.namedtuple("SetupInfo", "top_shapes param_shapes lr_mults loss_weights allow_backward")
_SETUPS = collections.OrderedDict()
_SETUPS_LOCK = threading.Lock()
_SETUPS_MAX = 512


def setup_info(spec, data_shapes):
    """Set the layer up for `data_shapes` (cached); check its blobs against `spec`.

    Returns
    -------
    SetupInfo
        Caffe's top shapes (0-d for a loss), parameter blob shapes, effective lr_mults, loss
        weight per top and, per input, whether Caffe can compute its gradient.
    """
    key = (spec.text, spec.num_out, tuple(tuple(int(d) for d in s) for s in data_shapes))
    with _SETUPS_LOCK:
        info = _SETUPS.get(key)
        if info is not None:
            _SETUPS.move_to_end(key)
            return info
    if len(data_shapes) != spec.num_data:
        raise CaffeShapeError("%s takes %d inputs, got %d" % (spec.context, spec.num_data, len(data_shapes)))
    for i, s in enumerate(data_shapes):
        if len(s) == 0 or any(int(d) <= 0 for d in s):
            raise CaffeShapeError("%s: input %d has unknown or empty shape %r"
                                  % (spec.context, i, tuple(s)))
    runner, top_shapes = _off_thread(_set_up, spec, data_shapes)
    lrs = runner.param_lr_mults
    if len(lrs) != len(spec.blobs):
        raise CaffeShapeError("%s has %d parameter blobs for inputs %r, the block declared %d (num_weight)"
                              % (spec.context, len(lrs), [tuple(s) for s in data_shapes], len(spec.blobs)))
    for blob, lr in zip(spec.blobs, lrs):
        if blob.aux != (lr == 0):
            raise CaffeShapeError("%s: parameter blob %d has lr_mult %g, the block declared it %s"
                                  % (spec.context, blob.index, lr, "auxiliary" if blob.aux else "learnable"))
    info = SetupInfo(top_shapes, runner.param_shapes, lrs,
                     [runner.loss_weight(i) for i in range(spec.num_out)],
                     [runner.allow_backward(i) for i in range(spec.num_data)])
    with _SETUPS_LOCK:
        _SETUPS[key] = info
        while len(_SETUPS) > _SETUPS_MAX:
            _SETUPS.popitem(last=False)
    _POOL.put(_pool_key(spec, data_shapes, np.float32), runner)
    return info


def _set_up(spec, data_shapes):
    runner = _new_runner(spec.text)
    return runner, runner.setup([tuple(s) for s in data_shapes], spec.num_out)


def mx_shape(shape):
    # MXNet's legacy shapes have no 0-d arrays: a scalar blob (a loss, a shared PReLU slope) is (1,).
    return tuple(shape) if len(shape) else (1,)


def check_inputs(spec, arrays, what="block"):
    """Check NDArray inputs before they reach MXNet (whose errors would not name the layer).

    Raises CaffeError for a wrong count, an unsupported dtype or context, or shapes Caffe refuses.
    """
    if len(arrays) != spec.num_data:
        raise CaffeShapeError("%s takes %d inputs, got %d" % (spec.context, spec.num_data, len(arrays)))
    dtype = np.dtype(arrays[0].dtype)
    for i, a in enumerate(arrays):
        if np.dtype(a.dtype) not in _DTYPES:
            raise CaffeShapeError("%s: input %d has dtype %s; Caffe computes in float32 or float64"
                                  % (spec.context, i, np.dtype(a.dtype).name))
        if np.dtype(a.dtype) != dtype:
            raise CaffeShapeError("%s: input %d has dtype %s, input 0 has %s; cast them to one dtype"
                                  % (spec.context, i, np.dtype(a.dtype).name, dtype.name))
        if a.context.device_type != "cpu":
            raise CaffeError("%s: input %d is on %s, but libcaffe is built CPU-only; use mx.cpu()"
                             % (spec.context, i, a.context))
        if a.stype != "default":
            raise CaffeShapeError("%s: input %d is %s, Caffe needs dense arrays" % (spec.context, i, a.stype))
    return setup_info(spec, [a.shape for a in arrays])


# ------------------------------------------------------------------ runner pool
def _pool_key(spec, data_shapes, dtype):
    return (spec.text, spec.num_out, np.dtype(dtype).name, tuple(tuple(int(d) for d in s) for s in data_shapes))


class _RunnerPool:
    """Set-up LayerRunners waiting for an operator instance.

    MXNet creates an operator instance per imperative call (and per CachedOp run without static
    allocation); setting a Caffe layer up again each time would rerun its fillers. A runner is
    leased to one instance from its first forward until MXNet deletes the instance, because Caffe
    layers keep what backward needs (Dropout's mask, pooling's argmax) inside the layer.
    """

    def __init__(self, per_key=8):
        self._idle = {}
        self._lock = threading.Lock()
        self._per_key = per_key

    def get(self, key, spec):
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop()
        text, num_out, dtype, shapes = key
        runner = _new_runner(text, dtype=dtype)
        runner.setup(list(shapes), num_out)
        return runner

    def put(self, key, runner):
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._per_key:
                idle.append(runner)


_POOL = _RunnerPool()


def _patch_registry_release():
    """Give runners back as soon as MXNet deletes an operator instance.

    mxnet.operator keeps each CustomOp in ``_registry.ref_holder`` and drops it when the C++
    state dies; the op also sits in a reference cycle with its ctypes callbacks, so ``__del__``
    would wait for the garbage collector. A dict that tells the op when it is dropped returns
    the runner at once. MXNet 1.9 is the last 1.x release, so this private detail is fixed.
    """
    registry = getattr(mx.operator, "_registry", None)
    holder = getattr(registry, "ref_holder", None)
    if holder is None or isinstance(holder, _ReleasingDict):
        return
    registry.ref_holder = _ReleasingDict(holder)


class _ReleasingDict(dict):
    def __delitem__(self, key):
        value = self.get(key)
        super().__delitem__(key)
        release = getattr(value, "_release_runner", None)
        if release is not None:
            release()


_patch_registry_release()


def _drain_engine():
    """Finish queued CaffeOp work before MXNet shuts its engine down.

    Registered after mxnet's own exit hook, so it runs first (atexit is last-in, first-out): a
    process exiting with Caffe work still queued otherwise waits forever inside MXNotifyShutdown.
    """
    try:
        mx.nd.waitall()
    except Exception:  # an operator's error at exit has nobody left to report to
        pass


atexit.register(_drain_engine)


# ------------------------------------------------------------------ memory
_LIB = mx.base._LIB
# A private function object for MXNDArrayGetData with its argument types declared: ctypes then
# converts without guessing (about 1.5 us less per address, several addresses per call). It is
# not MXNet's own object, whose argtypes MXNet's code does not expect to be set.
_GET_DATA = ctypes.CDLL(_LIB._name).MXNDArrayGetData
_GET_DATA.argtypes = (ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p))
_GET_DATA.restype = ctypes.c_int


def _address(arr):
    ptr = ctypes.c_void_p()
    ret = _GET_DATA(arr.handle, ctypes.byref(ptr))
    if ret != 0:
        mx.base.check_call(ret)
    return ptr.value or 0


def _count(shape):
    count = 1
    for d in shape:
        count *= int(d)
    return count


def _view(address, shape, dtype):
    """A numpy array over memory MXNet owns (valid while the operator call lasts)."""
    dtype = np.dtype(dtype)
    count = _count(shape)
    buf = (ctypes.c_char * (count * dtype.itemsize)).from_address(address)
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


# ------------------------------------------------------------------ the operator
def op_kwargs(spec, loss=False, grad_scale=1.0, top_grad=True, phase=None):
    """The operator's attributes for ``F.Custom`` / ``mx.sym.Custom`` (strings, as MXNet stores them)."""
    return dict(op_type=OP_TYPE, prototxt=spec.text, num_data=str(spec.num_data),
                num_out=str(spec.num_out), num_weight=str(len(spec.blobs)), blobs=spec.blobs_attr(),
                loss=str(int(bool(loss))), grad_scale=repr(float(grad_scale)),
                top_grad=str(int(bool(top_grad))), phase=phase or "auto")


def data_names(num_data, loss):
    if loss and num_data == 2:
        return ["data", "label"]
    return ["data_%d" % i for i in range(num_data)]


class _CaffeOp(mx.operator.CustomOp):
    """One Caffe layer on MXNet's arrays: zero copy in both directions, weights borrowed per call."""

    def __init__(self, spec, info, dtype, data_shapes, loss, grad_scale, top_grad, phase):
        super().__init__()
        self._spec = spec
        self._info = info
        self._dtype = np.dtype(dtype)
        self._key = _pool_key(spec, data_shapes, dtype)
        self._loss = loss
        self._grad_scale = grad_scale
        self._top_grad = top_grad
        self._phase = phase
        self._runner = None
        self._broken = False
        self._lock = threading.Lock()
        # Where each Caffe blob comes from: ("arg", k) is in_data[num_data + k], ("aux", k) is aux[k].
        self._blob_src = []
        n_arg = n_aux = 0
        for b in spec.blobs:
            if b.aux:
                self._blob_src.append(("aux", n_aux))
                n_aux += 1
            else:
                self._blob_src.append(("arg", n_arg))
                n_arg += 1
        self._scratch = {}
        # MXNet creates an operator instance for one set of input shapes (create_operator), so
        # shapes and element counts are fixed here, not read per call: an NDArray.shape is a
        # ctypes call (~5 us) and np.prod costs more than the rest of our per-call code. The
        # first forward checks the promise once.
        self._data_shapes = [tuple(int(d) for d in s) for s in data_shapes]
        self._out_shapes = [mx_shape(s) for s in info.top_shapes]
        self._top_sizes = [_count(s) for s in self._out_shapes]
        self._shapes_checked = False

    def _lease(self):
        with self._lock:
            if self._runner is None:
                self._runner = _POOL.get(self._key, self._spec)
            return self._runner

    def _release_runner(self):
        with self._lock:
            runner, self._runner = self._runner, None
        # A runner whose call failed half-way may hold half-updated state: let it go.
        if runner is not None and not self._broken:
            _POOL.put(self._key, runner)

    def __del__(self):
        try:
            self._release_runner()
        except Exception:  # interpreter shutdown: the pool may be gone already
            pass

    def _buffer(self, name, shape):
        buf = self._scratch.get(name)
        if buf is None or buf.shape != tuple(shape):
            buf = self._scratch[name] = np.empty(shape, dtype=self._dtype)
        return buf

    def _param_ptrs(self, in_data, aux):
        nd = self._spec.num_data
        return [_address(in_data[nd + k]) if src == "arg" else _address(aux[k]) for src, k in self._blob_src]

    def forward(self, is_train, req, in_data, out_data, aux):
        try:
            self._forward(is_train, req, in_data, out_data, aux)
        except BaseException:
            self._broken = True
            raise

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        try:
            self._backward(req, out_grad, in_data, out_data, in_grad, aux)
        except BaseException:
            self._broken = True
            raise

    def _forward(self, is_train, req, in_data, out_data, aux):
        runner = self._lease()
        phase = self._phase if self._phase != "auto" else ("train" if is_train else "test")
        if runner.phase != phase:
            runner.phase = phase
        nd = self._spec.num_data
        if not self._shapes_checked:
            got = [tuple(in_data[i].shape) for i in range(nd)] + [tuple(o.shape) for o in out_data]
            if got != self._data_shapes + self._out_shapes:
                raise CaffeShapeError("%s: operator set up for %r -> %r, called with %r"
                                      % (self._spec.context, self._data_shapes, self._out_shapes, got))
            self._shapes_checked = True
        top_ptrs, adds = [], []
        for i, r in enumerate(req):
            if r == "write" or r == "inplace":
                top_ptrs.append(_address(out_data[i]))
            else:
                buf = self._buffer("top%d" % i, self._out_shapes[i])
                top_ptrs.append(buf.ctypes.data)
                if r == "add":
                    adds.append((i, buf))
        runner.forward_ptrs(self._data_shapes, [_address(in_data[i]) for i in range(nd)], top_ptrs,
                            self._top_sizes, self._param_ptrs(in_data, aux))
        for i, buf in adds:
            _view(_address(out_data[i]), self._out_shapes[i], self._dtype)[...] += buf

    def _backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        runner = self._runner
        if runner is None:
            # Caffe keeps what Backward needs (masks, argmax, statistics) in the layer from Forward.
            raise CaffeError("%s: backward without a forward on this operator instance"
                             % self._spec.context)
        nd = self._spec.num_data
        info = self._info
        # Gradients arriving at the outputs; a loss seeds its own (loss_weight x grad_scale).
        top_diffs = []
        for i in range(len(out_data)):
            shape = self._out_shapes[i]
            lw = info.loss_weights[i] if self._loss else 0.0
            if lw != 0:
                buf = self._buffer("topdiff%d" % i, shape)
                if self._top_grad:
                    np.multiply(_view(_address(out_grad[i]), shape, self._dtype),
                                lw * self._grad_scale, out=buf)
                else:
                    buf.fill(lw * self._grad_scale)
                top_diffs.append(buf.ctypes.data)
            elif self._top_grad or not self._loss:
                top_diffs.append(_address(out_grad[i]))
            else:
                buf = self._buffer("topdiff%d" % i, shape)
                buf.fill(0)
                top_diffs.append(buf.ctypes.data)
        bottom_diffs, adds = [], []
        for i in range(nd):
            r = req[i]
            if r == "null":
                bottom_diffs.append(0)
            elif not info.allow_backward[i]:
                # Caffe has no gradient for a label: it is zero, as for any constant input.
                if r != "add":
                    _view(_address(in_grad[i]), self._data_shapes[i], self._dtype)[...] = 0
                bottom_diffs.append(0)
            elif r == "add":
                buf = self._buffer("bottomdiff%d" % i, self._data_shapes[i])
                bottom_diffs.append(buf.ctypes.data)
                adds.append((i, buf))
            else:
                # The bridge fills it first with what Forward left there (zeros for most layers).
                bottom_diffs.append(_address(in_grad[i]))
        param_diffs, zero = [], []
        for src, k in self._blob_src:
            r = req[nd + k] if src == "arg" else "null"
            if r == "null":
                param_diffs.append(0)
                zero.append(False)
            else:
                param_diffs.append(_address(in_grad[nd + k]))
                # Caffe adds into parameter diffs: that is grad_req "add"; "write" starts from zero.
                zero.append(r != "add")
        runner.backward_ptrs(self._data_shapes, [_address(in_data[i]) for i in range(nd)],
                             [_address(o) for o in out_data], top_diffs, bottom_diffs,
                             self._param_ptrs(in_data, aux), param_diffs, zero)
        for i, buf in adds:
            _view(_address(in_grad[i]), self._data_shapes[i], self._dtype)[...] += buf


@mx.operator.register(OP_TYPE)
class _CaffeOpProp(mx.operator.CustomOpProp):
    """Attributes (all strings, as stored in symbol JSON): prototxt, num_data, num_out, num_weight,
    blobs (roles, ``:aux`` marks auxiliary state), loss, grad_scale, top_grad, phase."""

    def __init__(self, prototxt, num_data="1", num_out="1", num_weight=None, blobs=None, loss="0",
                 grad_scale="1.0", top_grad="1", phase="auto"):
        self._loss = loss in ("1", "True", "true")
        self._top_grad = top_grad in ("1", "True", "true")
        # A loss whose caller gives no head gradient (the Module API) must not ask for one.
        super().__init__(need_top_grad=self._top_grad or not self._loss)
        num_weight = None if num_weight in (None, "", "None", "-1") else int(num_weight)
        spec = describe(prototxt, int(num_data), int(num_out), num_weight)
        if blobs is not None and blobs != spec.blobs_attr():
            # The JSON's roles win (they name the saved parameters); Caffe must agree on the count.
            roles = [b for b in blobs.split(",") if b]
            if len(roles) != len(spec.blobs):
                raise CaffeShapeError("%s has %d parameter blobs, the operator lists %d (%s)"
                                      % (spec.context, len(spec.blobs), len(roles), blobs))
            spec = spec._replace(blobs=tuple(
                b._replace(role=r.split(":")[0], aux=r.endswith(":aux")) for b, r in zip(spec.blobs, roles)))
        self._spec = spec
        self._grad_scale = float(grad_scale)
        if phase not in ("auto", "train", "test"):
            raise ValueError("%s: phase must be auto, train or test, got %r" % (spec.context, phase))
        self._phase = phase

    def list_arguments(self):
        return data_names(self._spec.num_data, self._loss) + [b.role for b in self._spec.args]

    def list_auxiliary_states(self):
        return [b.role for b in self._spec.auxs]

    def list_outputs(self):
        if self._spec.num_out == 1:
            return ["output"]
        return ["output%d" % i for i in range(self._spec.num_out)]

    def infer_shape(self, in_shape):
        nd = self._spec.num_data
        info = setup_info(self._spec, in_shape[:nd])
        params = [mx_shape(s) for s in info.param_shapes]
        args = [params[b.index] for b in self._spec.args]
        auxs = [params[b.index] for b in self._spec.auxs]
        return (list(in_shape[:nd]) + args, [mx_shape(s) for s in info.top_shapes], auxs)

    def infer_type(self, in_type):
        dtype = np.dtype(in_type[0])
        if dtype not in _DTYPES:
            raise CaffeShapeError("%s: dtype %s; Caffe computes in float32 or float64"
                                  % (self._spec.context, dtype.name))
        n_in = len(self.list_arguments())
        t = dtype.type  # mxnet.operator maps numpy scalar types, not dtype objects
        return [t] * n_in, [t] * self._spec.num_out, [t] * len(self._spec.auxs)

    def create_operator(self, ctx, in_shapes, in_dtypes):
        if ctx.device_type != "cpu":
            raise CaffeError("%s: context %s, but libcaffe is built CPU-only; use mx.cpu()"
                             % (self._spec.context, ctx))
        nd = self._spec.num_data
        info = setup_info(self._spec, in_shapes[:nd])
        dtype = np.dtype(mx.ndarray.ndarray._DTYPE_MX_TO_NP[in_dtypes[0]])  # MXNet passes its type codes here
        return _CaffeOp(self._spec, info, dtype, in_shapes[:nd], self._loss, self._grad_scale,
                        self._top_grad, self._phase)


# ------------------------------------------------------------------ Caffe's fillers as an initializer
@mx.init.register
class CaffeFiller(mx.init.Initializer):
    """Initialize a parameter as Caffe's layer would: run the prototxt's own fillers.

    Parameters
    ----------
    prototxt : str
        The layer's prototxt text.
    index : int
        Which parameter blob (0 weights, 1 bias, ...).
    num_out : int
        The layer's number of outputs (for its set-up).

    Notes
    -----
    Caffe's fillers depend on the blob's shape only, but the layer makes its blobs during set-up,
    which needs input shapes: the initializer uses a set-up seen by shape inference (which MXNet
    always runs first) whose blob `index` has the array's shape. Caffe's RNG is per thread;
    ``gluon_caffe.set_random_seed`` in the initializing thread makes the values reproducible.
    """

    def __init__(self, prototxt, index, num_out=1):
        super().__init__(prototxt=prototxt, index=int(index), num_out=int(num_out))
        self._prototxt = _text(prototxt)
        self._index = int(index)
        self._num_out = int(num_out)

    def _init_weight(self, desc, arr):
        shape = tuple(arr.shape)
        with _SETUPS_LOCK:
            candidates = [key[2] for key, info in reversed(_SETUPS.items())
                          if key[0] == self._prototxt and key[1] == self._num_out
                          and self._index < len(info.param_shapes)
                          and mx_shape(info.param_shapes[self._index]) == shape]
        if not candidates:
            from . import _lib  # the C++ operator's shape inference (inside a parent's graph)

            found = _lib.setup_inputs(self._prototxt, self._num_out, self._index, shape)
            if found is not None:
                candidates = [found]
        if not candidates:
            raise CaffeError("parameter %r: no set-up of this Caffe layer gives blob %d the shape %r; "
                             "run the block on data first (shapes are inferred there)"
                             % (str(desc), self._index, shape))
        dtype = np.dtype(arr.dtype)
        runner = _new_runner(self._prototxt, dtype=dtype if dtype in _DTYPES else np.float32)
        runner.setup(list(candidates[0]), self._num_out)
        arr[:] = runner.params[self._index].reshape(shape)

    _init_bias = _init_weight
    _init_gamma = _init_weight
    _init_beta = _init_weight
    _init_default = _init_weight
