"""CaffeLayer: any Caffe layer, given as prototxt text, as a Gluon HybridBlock."""

import ctypes

import mxnet as mx
import numpy as np

from .._build_info import BUILD_INFO
from ..errors import CaffeError, CaffeShapeError, UnsupportedLayerError
from . import _lib
from ._op import CaffeFiller, check_inputs, describe, mx_shape, op_kwargs

__all__ = ["CaffeLayer"]


class _CaffeBlock(mx.gluon.HybridBlock):
    """What CaffeLayer and CaffeLossBlock share: the layer's blobs as Parameters, the operator call."""

    _loss = False

    def __init__(self, prototxt, num_data, num_out, num_weight, phase, grad_scale,
                 weight_initializer, bias_initializer, use_fillers, dtype, prefix, params):
        super().__init__(prefix=prefix, params=params)
        if phase not in (None, "auto", "train", "test"):
            raise ValueError("phase must be None (follow autograd's training mode), 'train' or 'test', "
                             "got %r" % (phase,))
        self._spec = describe(prototxt, num_data, num_out, num_weight)
        self._phase = None if phase in (None, "auto") else phase
        self._grad_scale_attr = grad_scale
        self._op_kwargs = op_kwargs(self._spec, loss=self._loss, grad_scale=grad_scale,
                                    top_grad=True, phase=phase)
        # What the graph of the C++ operator was built for (see forward): learnable blobs'
        # grad_req, and which inputs arrived with a gradient buffer attached.
        self._built_for = None
        self._input_grads = None
        self._checked = None  # what forward last checked (see forward)
        with self.name_scope():
            for blob in self._spec.blobs:
                if blob.role == "weight" and weight_initializer is not None:
                    init = weight_initializer
                elif blob.role == "bias" and bias_initializer is not None:
                    init = bias_initializer
                elif use_fillers:
                    init = CaffeFiller(self._spec.text, blob.index, self._spec.num_out)
                else:
                    init = None  # the initializer given to initialize() applies
                # Axes known, sizes not: MXNet 1.9's library operators crash on inputs whose
                # number of axes is unknown, so the C++ operator needs at least this much.
                param = self.params.get(
                    blob.role, shape=(0,) * blob.ndim if blob.ndim else None, init=init, dtype=dtype, allow_deferred_init=True,
                    grad_req="null" if blob.aux else "write", differentiable=not blob.aux,
                    lr_mult=1.0 if blob.aux else blob.lr_mult, wd_mult=blob.decay_mult)
                setattr(self, blob.role, param)
        self._blob_params = [getattr(self, b.role) for b in self._spec.blobs]
        self._arg_params = [getattr(self, b.role) for b in self._spec.args]

    @property
    def prototxt(self):
        """The layer's prototxt text."""
        return self._spec.text

    @property
    def layer_type(self):
        """Caffe's layer type, e.g. ``"InnerProduct"``."""
        return self._spec.type

    @property
    def layer_name(self):
        """The layer's name in the prototxt (may be empty)."""
        return self._spec.name

    @property
    def param_roles(self):
        """Parameter names in Caffe's blob order (``["weight", "bias"]``, BatchNorm's statistics...)."""
        return [b.role for b in self._spec.blobs]

    def forward(self, x, *args):
        # With arrays in hand, check them here: inside MXNet a Caffe failure loses its name. The
        # checks rerun when the inputs or the parameters are other objects than last time.
        if not isinstance(x, mx.nd.NDArray):
            self._input_grads = None
            return super().forward(x, *args)
        inputs = self._prepare((x,) + args)
        if self._seen(inputs) != self._checked:
            self._check(inputs)
            self._checked = self._seen(inputs)
        x, args = inputs[0], inputs[1:]
        if _lib.available():
            self._input_grads = tuple(map(_has_grad, inputs))
            built_for = (self._param_reqs(), self._input_grads)
            if built_for != self._built_for:
                # lib_api passes no req: the graph bakes grad_reqs in, so rebuild it.
                self._built_for = built_for
                if self._cached_op is not None:
                    self._clear_cached_op()
        try:
            return super().forward(x, *args)
        except mx.base.MXNetError:
            # A new array can come back with a freed one's id and handle, so the checks may have
            # been skipped: say what is wrong in the layer's terms where they can.
            self._checked = None
            try:
                self._check(inputs)
            except CaffeError as error:
                raise error from None
            raise

    def _seen(self, inputs):
        """What the checks looked at, by identity: the input arrays (an NDArray's shape, dtype and
        context never change) and each parameter's arrays, deferred initialization, shape and
        contexts. Ids, not the objects: a block does not keep its last input alive."""
        return (tuple((id(a), a.handle.value) for a in inputs),
                tuple((id(p._data), id(p._deferred_init), p._shape, id(p._ctx_list)) for p in self._blob_params))

    def _check(self, inputs):
        """Contexts, dtypes and shapes of ``inputs`` and the parameters, as Caffe will see them."""
        self._check_contexts(inputs)
        info = check_inputs(self._spec, inputs)
        for blob in self._spec.blobs:
            param = getattr(self, blob.role)
            if np.dtype(param.dtype) != np.dtype(inputs[0].dtype):
                raise CaffeShapeError(
                    "%s: the inputs are %s, parameter %s is %s; Caffe computes in one dtype: cast() the "
                    "block or the inputs" % (self._spec.context, np.dtype(inputs[0].dtype).name, blob.role,
                                              np.dtype(param.dtype).name))
            have = param.shape
            want = mx_shape(info.param_shapes[blob.index])
            if have is not None and all(have) and tuple(have) != want:
                raise CaffeShapeError(
                    "%s: inputs of shapes %s need %s of shape %r, the parameter has %r"
                    % (self._spec.context, [tuple(a.shape) for a in inputs], blob.role, want, tuple(have)))
            if have is None or not all(have):
                # Known before MXNet infers shapes (deferred initialization), from Caffe itself.
                param._shape = want

    def _check_contexts(self, inputs):
        """A CPU-only libcaffe runs on CPU contexts only: say so before MXNet fails on its own terms."""
        if not BUILD_INFO.get("flags", {}).get("CPU_ONLY", True):
            return
        contexts = [("input %d" % i, a.context) for i, a in enumerate(inputs)]
        for blob in self._spec.blobs:
            try:
                contexts += [(blob.role, c) for c in getattr(self, blob.role).list_ctx()]
            except RuntimeError:  # not initialized yet: MXNet says so itself
                pass
        for what, c in contexts:
            if c.device_type not in ("cpu", "cpu_pinned", "cpu_shared"):
                raise UnsupportedLayerError(
                    "%s: %s is on %s, but this libcaffe is built CPU-only (gluon_caffe.caffe_info() flags "
                    "CPU_ONLY): initialize and run the block on mx.cpu()" % (self._spec.context, what, c))

    def _param_reqs(self):
        return tuple(p.grad_req for p in self._arg_params)

    def _prepare(self, inputs):
        return inputs

    def hybrid_forward(self, F, x, *args, **params):
        inputs = [x] + list(args)
        blobs = [params[b.role] for b in self._spec.args] + [params[b.role] for b in self._spec.auxs]
        if not _lib.available() or any(getattr(self, b.role).shape is None for b in self._spec.blobs):
            return F.Custom(*(inputs + blobs), **self._op_kwargs)
        # An input whose gradient buffer may ask for "add" goes through a same-shape reshape, whose
        # backward honours req; the C++ operator itself can only write. (identity would do too, but
        # runs twice per step, forward and backward: MXNet's profiler shows one Reshape per ip1
        # step, 0.045 ms, against two _copy of 0.043 ms each.) Arrays say whether they carry a
        # gradient; inside a parent's graph, only the graph's own inputs can.
        grads = self._input_grads
        if grads is None or len(grads) != len(inputs):
            grads = [isinstance(a, mx.sym.Symbol) and a.get_children() is None for a in inputs]
        inputs = [F.reshape(a, shape=(-2,)) if g else a for a, g in zip(inputs, grads)]
        phase, flag = self._phase, []
        if phase is None and self._spec.type in _lib.PHASE_TYPES:
            if F is mx.nd:
                phase = "train" if mx.autograd.is_training() else "test"
            else:
                flag = [_lib.phase_flag(F)]
        kwargs = _lib.lib_kwargs(self._spec, self._loss, self._grad_scale_attr, phase,
                                 self._param_reqs(), bool(flag))
        out = getattr(F, _lib.LIB_OP)(*(inputs + blobs + flag), **kwargs)
        return out

    def __repr__(self):
        return "%s(%s %r, inputs=%d, outputs=%d, params=%s)" % (
            type(self).__name__, self._spec.type, self._spec.name, self._spec.num_data,
            self._spec.num_out, self.param_roles)


_GET_GRAD = ctypes.CDLL(mx.base._LIB._name).MXNDArrayGetGrad
_GET_GRAD.argtypes = (ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p))
_GET_GRAD.restype = ctypes.c_int


def _has_grad(arr):
    """Whether `arr` has a gradient buffer attached (attach_grad), without wrapping it."""
    out = ctypes.c_void_p()
    if _GET_GRAD(arr.handle, ctypes.byref(out)) != 0:
        mx.base.check_call(-1)
    if out.value:
        mx.base._LIB.MXNDArrayFree(out)
        return True
    return False


class CaffeLayer(_CaffeBlock):
    """A Caffe layer of any type compiled into libcaffe, run by real Caffe inside Gluon.

    Parameters
    ----------
    prototxt : str
        The layer: ``layer { type: "InnerProduct" inner_product_param { num_output: 128 } }``,
        V1 ``layers { ... }``, bare LayerParameter fields, or a path to such a file.
    num_data : int
        Number of inputs (Caffe bottoms).
    num_out : int
        Number of outputs (Caffe tops).
    num_weight : int, optional
        Number of parameter blobs; inferred from Caffe, and checked against it when given.
    phase : {None, 'train', 'test'}
        Caffe's phase; None follows ``autograd.is_training()`` (Dropout, BatchNorm).
    weight_initializer, bias_initializer : Initializer, optional
        Override Caffe's fillers for the ``weight`` / ``bias`` parameters.
    use_fillers : bool
        Initialize parameters with the prototxt's fillers (default). With False, the initializer
        given to ``initialize()`` applies.
    dtype : str
        Parameter dtype, float32 or float64 (``cast()`` works too).

    Notes
    -----
    Parameters are named by role: ``weight``, ``bias``, further blobs ``blob2``...; BatchNorm's
    ``mean``, ``variance``, ``scale_factor``. Blobs with lr_mult 0 (BatchNorm's statistics, frozen
    weights) are auxiliary state (grad_req null), updated by Caffe itself in TRAIN phase. lr_mult and
    decay_mult become Parameter.lr_mult and wd_mult. Shapes are inferred at the first forward.

    Examples
    --------
    >>> fc1 = CaffeLayer('layer{type:"InnerProduct" inner_product_param{num_output:128 '
    ...                  'weight_filler{type:"xavier"}}}')
    >>> cat = CaffeLayer('layer{type:"Concat" concat_param{axis:1}}', num_data=2)
    """

    def __init__(self, prototxt, num_data=1, num_out=1, num_weight=None, phase=None,
                 weight_initializer=None, bias_initializer=None, use_fillers=True, dtype="float32",
                 prefix=None, params=None):
        super().__init__(prototxt, num_data, num_out, num_weight, phase, 1.0, weight_initializer,
                         bias_initializer, use_fillers, dtype, prefix, params)
