"""The C++ operator library: one Caffe layer as a native MXNet operator (``gluon_caffe_CaffeOp``).

``gluon_caffe/_ext/caffe_op.cc``, built by setup.py against the wheel's ``lib_api.h`` (version 11)
and loaded here at import. A call costs tens of microseconds against hundreds for the Python
CustomOp of ``_op.py``; CaffeLayer and CaffeLossBlock use it whenever it loaded. MXNet's library
interface passes an operator neither ``is_train`` nor ``req``, so the blocks say what they know
in attributes (see ``lib_kwargs``) and carry the training flag as a graph input where a layer's
phase matters.

Set ``GLUON_CAFFE_OPERATOR=python`` to run every block through the Python CustomOp instead.
"""

import ctypes
import glob
import os

import mxnet as mx

__all__ = ["LIB_OP", "NMS_OP", "available", "load_error", "PHASE_TYPES", "lib_kwargs", "phase_flag"]

#: The operator's name in MXNet's registry and in exported symbol JSON.
LIB_OP = "gluon_caffe_CaffeOp"
#: The library's single-threaded NMS (``_ext/nms_op.cc``), used by inference graphs of SSD nets.
NMS_OP = "gluon_caffe_nms"

#: Caffe layer types (not data layers) whose computation depends on the phase.
PHASE_TYPES = frozenset({"Dropout", "BatchNorm"})

_EXT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_ext")
_STATE = {"loaded": False, "error": None, "cdll": None}


def _library_path():
    found = sorted(glob.glob(os.path.join(_EXT, "libgluon_caffe_op*.so")))
    if not found:
        raise OSError("no libgluon_caffe_op*.so in %s (run scripts/setup.sh, or setup.py build_ext)" % _EXT)
    return found[0]


def _register_python_functions():
    """Make ``mx.nd.<op>`` / ``mx.sym.<op>`` for the library's operators (``LIB_OP``, ``NMS_OP``).

    ``mx.library.load`` would regenerate the functions of all of MXNet's ~700 operators (about
    0.6 s at every ``import gluon_caffe``); this builds only ours, with MXNet's own generators.
    """
    from mxnet.ndarray import register as nd_register
    from mxnet.symbol import register as sym_register

    for name in (LIB_OP, NMS_OP):
        handle = mx.base.OpHandle()
        mx.base.check_call(mx.base._LIB.NNGetOpHandle(mx.base.c_str(name), ctypes.byref(handle)))
        nd_fn = nd_register._make_ndarray_function(handle, name, name)
        sym_fn = sym_register._make_symbol_function(handle, name, name)
        for module, fn in ((mx.nd, nd_fn), (mx.nd.op, nd_fn), (mx.sym, sym_fn), (mx.sym.op, sym_fn)):
            setattr(module, name, fn)


def _load():
    if os.environ.get("GLUON_CAFFE_OPERATOR", "").lower() == "python":
        _STATE["error"] = "GLUON_CAFFE_OPERATOR=python"
        return
    try:
        path = _library_path()
        already = hasattr(mx.nd, LIB_OP) and hasattr(mx.nd, NMS_OP)
        if not already:
            mx.base.check_call(mx.base._LIB.MXLoadLib(mx.base.c_str(path), mx.base.mx_uint(0)))
            try:
                _register_python_functions()
            except Exception:  # MXNet internals moved: fall back to its public loader
                mx.library.load(path, verbose=False)
        cdll = ctypes.CDLL(path)  # the same handle MXNet opened: the same registry
        fn = cdll.gluon_caffe_op_setup_inputs
        fn.argtypes = (ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                       ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        fn.restype = ctypes.c_int
        _STATE["cdll"] = cdll
        _STATE["loaded"] = True
    except Exception as e:  # the Python CustomOp still works; say why the fast path is off
        _STATE["error"] = "%s: %s" % (type(e).__name__, e)


def available():
    """Whether CaffeLayer/CaffeLossBlock run on the C++ operator (else the Python CustomOp)."""
    return _STATE["loaded"]


def load_error():
    """Why the C++ operator is not in use (None when it is)."""
    return _STATE["error"]


def setup_inputs(prototxt, num_out, index, shape):
    """Input shapes of a set-up the C++ operator made (shape inference inside a parent's graph)
    whose blob `index` has `shape`; None when there is none."""
    cdll = _STATE["cdll"]
    if cdll is None:
        return None
    dims = (ctypes.c_int * len(shape))(*shape)
    buf = ctypes.create_string_buffer(4096)
    n = cdll.gluon_caffe_op_setup_inputs(prototxt.encode(), int(num_out), int(index), dims, len(shape),
                                         buf, len(buf))
    if n <= 0:
        return None
    return [tuple(int(d) for d in part.split(",")) for part in buf.value.decode().split(";")]


def lib_kwargs(spec, loss, grad_scale, phase, param_reqs, phase_input):
    """The operator's attributes (strings, as MXNet stores them).

    Parameters
    ----------
    param_reqs : sequence of str
        grad_req of each learnable blob in order ('write', 'add', 'null'): lib_api does not pass
        req, so the block bakes it in (and rebuilds its graph when it changes).
    phase_input : bool
        One more input follows the blobs: the training flag made by :func:`phase_flag`.
    """
    return dict(prototxt=spec.text, num_data=str(spec.num_data), num_out=str(spec.num_out),
                blobs=spec.blobs_attr(), loss=str(int(bool(loss))), grad_scale=repr(float(grad_scale)),
                top_grad="1", phase=phase or "auto",
                param_req="".join({"write": "w", "add": "a", "null": "n"}[r] for r in param_reqs),
                phase_input=str(int(bool(phase_input))))


def phase_flag(F):
    """A 1-element array that is 1 in inference and 0 or 2 in training.

    MXNet's Dropout sees the engine's ``is_train`` in every mode (imperative, hybridized, static
    shapes); lib_api operators do not, so the flag is computed in the graph next to the layer.
    """
    return F.Dropout(F.ones(shape=(1,)), p=0.5)


_load()
