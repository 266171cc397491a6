"""ONNX export of converted Caffe models and hybridizable Gluon nets (our own emitter, not mx.onnx)."""

import ast
import json
import os

import mxnet as mx
import numpy as np

from ._files import atomic_outputs
from .errors import ConversionError

__all__ = ["export_onnx", "to_onnx_model", "DEFAULT_OPSET"]

DEFAULT_OPSET = 13
# IR 8 (ONNX 1.10): new enough for opset 13-17, old enough for every runtime that reads opset 13.
_IR_VERSION = 8
_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min


def _onnx():
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - onnx is pinned in requirements.txt
        raise ImportError("export_onnx needs the 'onnx' package (see requirements.txt)") from e
    return onnx


def _parse(value, default=None):
    """An MXNet attribute string as a Python value: "(3, 3)" -> (3, 3), "True" -> True, "None" -> None."""
    if value is None:
        return default
    if value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[value]
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _tuple(value, default=()):
    v = _parse(value, default)
    if v is None:
        return default
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


# Operators whose second input is a training label, unused at inference.
_LABEL_OPS = ("SoftmaxOutput", "LinearRegressionOutput", "LogisticRegressionOutput", "MAERegressionOutput")


def _label_only_nodes(graph):
    """Ids of the variables read only as a loss layer's label (not needed at inference)."""
    uses = {}
    for node in graph["nodes"]:
        for k, e in enumerate(node["inputs"]):
            uses.setdefault(e[0], set()).add((node["op"], k))
    labels = {(op, 1) for op in _LABEL_OPS}
    return {nid for nid, u in uses.items() if u <= labels and graph["nodes"][nid]["op"] == "null"}


class _Emitter(object):
    """Builds the ONNX graph node by node from an MXNet symbol's JSON."""

    def __init__(self, symbol, params, input_shapes, opset, dynamic_batch=False):
        onnx = _onnx()
        self.onnx = onnx
        self.helper = onnx.helper
        self.opset = opset
        self.dynamic_batch = dynamic_batch
        self.symbol = symbol
        self.params = params
        self.input_shapes = input_shapes
        self.nodes = []
        self.initializers = []
        self._names = set()
        self._const_cache = {}
        self.unsupported = []
        self.graph = json.loads(symbol.tojson())
        known = dict(input_shapes)
        known.update({k: tuple(v.shape) for k, v in params.items()})
        types = {n: np.float32 for n in input_shapes}
        types.update({k: np.dtype(v.dtype) for k, v in params.items()})
        self._infer(symbol, known, types)

    # -- static facts about every MXNet tensor ------------------------------------------------
    def _infer(self, symbol, input_shapes, input_types):
        internals = symbol.get_internals()
        names = internals.list_outputs()
        try:
            # Partial: ops sized at run time (arange_like, PriorBox) leave some shapes unknown here.
            _, shapes, _ = internals.infer_shape_partial(**input_shapes)
            _, types, _ = internals.infer_type_partial(**input_types)
        except mx.base.MXNetError as e:
            raise ConversionError("cannot infer the net's shapes for inputs %s: %s"
                                  % (self.input_shapes, str(e).strip().splitlines()[0])) from e
        self.shape, self.dtype = {}, {}
        counts = {}
        for k, name in enumerate(names):
            node = internals[k].name
            i = counts.get(node, 0)
            counts[node] = i + 1
            known = shapes[k] is not None and len(shapes[k]) and all(d > 0 for d in shapes[k])
            self.shape[(node, i)] = tuple(shapes[k]) if known else None
            self.dtype[(node, i)] = np.dtype(types[k]) if types[k] is not None else np.dtype(np.float32)

    # -- helpers ---------------------------------------------------------------------------------
    def fresh(self, base):
        name, k = base, 0
        while name in self._names:
            k += 1
            name = "%s_%d" % (base, k)
        self._names.add(name)
        return name

    def add(self, op, inputs, n_out=1, name=None, outputs=None, **attrs):
        name = self.fresh(name or "n_" + op)
        outs = outputs or [self.fresh(name + ("_out" if n_out == 1 else "_out%d" % i)) for i in range(n_out)]
        self.nodes.append(self.helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, dtype=np.float32, name=None):
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if name is None else None
        if key is not None and key in self._const_cache:
            return self._const_cache[key]
        tname = self.fresh(name or "const")
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, tname))
        if key is not None:
            self._const_cache[key] = tname
        return tname

    def ints(self, values):
        return self.const(np.asarray(values, np.int64), np.int64)

    def to_dtype(self, x, dtype):
        return self.add("Cast", [x], to=self.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))

    def dim(self, x, axis):
        """A 1-element int64 tensor holding ``x.shape[axis]`` at run time."""
        return self.add("Gather", [self.add("Shape", [x]), self.ints([axis])], axis=0)

    # -- the walk ----------------------------------------------------------------------------------
    def run(self, output_names):
        nodes = self.graph["nodes"]
        custom = ["%s (%s)" % (n["name"], n.get("attrs", {}).get("op_type", "?")) for n in nodes if n["op"] == "Custom"]
        custom += ["%s (%s)" % (n["name"], n["op"]) for n in nodes if n["op"] == "gluon_caffe_CaffeOp"]
        if custom:
            raise ConversionError("cannot export to ONNX: %d layer(s) run in Caffe as CaffeLayers "
                                  "(fallbacks or blocks), which ONNX cannot express: %s"
                                  % (len(custom), ", ".join(custom)))
        self._names.update(output_names)
        labels_only = _label_only_nodes(self.graph)
        tensor = {}
        for nid, node in enumerate(nodes):
            op, name = node["op"], node["name"]
            if op == "null":
                if nid in labels_only and name not in self.params and name not in self.input_shapes:
                    tensor[(nid, 0)] = ""
                    continue
                if name in self.params:
                    arr = self.params[name]
                    arr = arr.asnumpy() if hasattr(arr, "asnumpy") else np.asarray(arr)
                    self._names.add(name)
                    self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
                elif name not in self.input_shapes:
                    raise ConversionError("variable %r is neither an input (give its shape in input_shapes) "
                                          "nor a parameter" % name)
                else:
                    self._names.add(name)
                tensor[(nid, 0)] = name
                continue
            attrs = node.get("attrs", {})
            handler = getattr(self, "op_" + op.lstrip("_"), None)
            if handler is None:
                self.unsupported.append("%s (%s)" % (name, op))
                continue
            if self.unsupported:
                continue
            ins = [tensor[(e[0], e[1])] for e in node["inputs"]]
            in_keys = [(nodes[e[0]]["name"], e[1]) for e in node["inputs"]]
            self.cur = (name, attrs, in_keys, op)
            outs = handler(ins, attrs)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for i, t in enumerate(outs):
                tensor[(nid, i)] = t
        if self.unsupported:
            raise ConversionError("cannot export to ONNX: no ONNX mapping for %d node(s): %s"
                                  % (len(self.unsupported), ", ".join(self.unsupported)))
        heads = self.graph["heads"]
        graph_outputs = []
        for (nid, idx, _), oname in zip(heads, output_names):
            src = tensor[(nid, idx)]
            self.add("Identity", [src], outputs=[oname], name=oname + "_identity")
            graph_outputs.append(oname)
        return graph_outputs

    # -- attribute helpers -------------------------------------------------------------------------
    def in_shape(self, i=0):
        shape = self.shape.get(self.cur[2][i])
        if shape is None:
            raise ConversionError("node %r (%s): the shape of input %d is unknown at export time"
                                  % (self.cur[0], self.cur[3], i))
        return shape

    def in_dtype(self, i=0):
        return self.dtype.get(self.cur[2][i], np.dtype(np.float32))

    def out_shape(self, i=0):
        return self.shape.get((self.cur[0], i))

    def scalar(self, attrs, i=0):
        return self.const(float(_parse(attrs.get("scalar"), 0.0)), self.in_dtype(i))

    # -- convolution, dense ------------------------------------------------------------------------
    def _conv_attrs(self, attrs):
        kernel = _tuple(attrs["kernel"])
        n = len(kernel)
        stride = _tuple(attrs.get("stride"), (1,) * n) or (1,) * n
        pad = _tuple(attrs.get("pad"), (0,) * n) or (0,) * n
        dilate = _tuple(attrs.get("dilate"), (1,) * n) or (1,) * n
        return dict(kernel_shape=list(kernel), strides=list(stride), pads=list(pad) * 2, dilations=list(dilate),
                    group=int(_parse(attrs.get("num_group"), 1)))

    def op_Convolution(self, ins, attrs):
        if _parse(attrs.get("layout")) not in (None, "NCHW", "NCW", "NCDHW"):
            raise ConversionError("node %r: Convolution layout %s is not supported" % (self.cur[0], attrs["layout"]))
        no_bias = _parse(attrs.get("no_bias"), False)
        return self.add("Conv", ins[:2] if no_bias else ins[:3], **self._conv_attrs(attrs))

    def op_Deconvolution(self, ins, attrs):
        # MXNet's Deconvolution has no bias unless told otherwise (its default no_bias is True).
        no_bias = _parse(attrs.get("no_bias"), True)
        if _tuple(attrs.get("target_shape")):
            raise ConversionError("node %r: Deconvolution target_shape is not supported" % self.cur[0])
        kw = self._conv_attrs(attrs)
        adj = _tuple(attrs.get("adj"), ())
        if adj and any(adj):
            kw["output_padding"] = list(adj)
        return self.add("ConvTranspose", ins[:2] if no_bias else ins[:3], **kw)

    def op_FullyConnected(self, ins, attrs):
        no_bias = _parse(attrs.get("no_bias"), False)
        if _parse(attrs.get("flatten"), True):
            x = self.add("Flatten", [ins[0]], axis=1)
            return self.add("Gemm", [x, ins[1]] + ([] if no_bias else [ins[2]]), transB=1)
        y = self.add("MatMul", [ins[0], self.add("Transpose", [ins[1]], perm=[1, 0])])
        return y if no_bias else self.add("Add", [y, ins[2]])

    def op_Embedding(self, ins, attrs):
        return self.add("Gather", [ins[1], self.to_dtype(ins[0], np.int64)], axis=0)

    # -- activations -------------------------------------------------------------------------------
    _ACT = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softrelu": "Softplus", "softsign": "Softsign"}

    def op_Activation(self, ins, attrs):
        act = attrs.get("act_type")
        if act not in self._ACT:
            raise ConversionError("node %r: Activation act_type %s is not supported" % (self.cur[0], act))
        return self.add(self._ACT[act], ins[:1])

    def op_LeakyReLU(self, ins, attrs):
        act = attrs.get("act_type", "leaky")
        slope = float(_parse(attrs.get("slope"), 0.25))
        if act == "leaky":
            return self.add("LeakyRelu", ins[:1], alpha=slope)
        if act == "elu":
            return self.add("Elu", ins[:1], alpha=slope)
        if act == "prelu":
            # MXNet's gamma is (C,): ONNX broadcasts from the right, so it must be (C, 1, ..., 1).
            shape = self.in_shape()
            ndim = len(shape) if shape else 4
            gamma = self.add("Reshape", [ins[1], self.ints([-1] + [1] * max(ndim - 2, 0))])
            return self.add("PRelu", [ins[0], gamma])
        raise ConversionError("node %r: LeakyReLU act_type %s is not supported" % (self.cur[0], act))

    def _unary(op):
        return lambda self, ins, attrs: self.add(op, ins[:1])

    op_relu = _unary("Relu")
    op_sigmoid = _unary("Sigmoid")
    op_tanh = _unary("Tanh")
    op_exp = _unary("Exp")
    op_log = _unary("Log")
    op_sqrt = _unary("Sqrt")
    op_abs = _unary("Abs")
    op_negative = _unary("Neg")
    op_reciprocal = _unary("Reciprocal")
    op_floor = _unary("Floor")
    op_ceil = _unary("Ceil")
    op_sign = _unary("Sign")
    op_erf = _unary("Erf")
    op_copy = _unary("Identity")
    op_identity = _unary("Identity")
    op_BlockGrad = _unary("Identity")
    op_stop_gradient = _unary("Identity")
    op_Dropout = _unary("Identity")
    op_Flatten = lambda self, ins, attrs: self.add("Flatten", ins[:1], axis=1)  # noqa: E731
    op_flatten = op_Flatten

    def op_square(self, ins, attrs):
        return self.add("Mul", [ins[0], ins[0]])

    def op_rsqrt(self, ins, attrs):
        return self.add("Reciprocal", [self.add("Sqrt", ins[:1])])

    def op_clip(self, ins, attrs):
        dt = self.in_dtype()
        return self.add("Clip", [ins[0], self.const(float(_parse(attrs["a_min"])), dt),
                                 self.const(float(_parse(attrs["a_max"])), dt)])

    # -- normalisation -------------------------------------------------------------------------
    def op_BatchNorm(self, ins, attrs):
        if int(_parse(attrs.get("axis"), 1)) != 1:
            raise ConversionError("node %r: BatchNorm axis other than 1 is not supported" % self.cur[0])
        gamma = ins[1]
        if _parse(attrs.get("fix_gamma"), True):
            # fix_gamma=True means gamma is 1 whatever the parameter holds.
            c = self.in_shape()[1]
            gamma = self.const(np.ones(c, np.float32))
        return self.add("BatchNormalization", [ins[0], gamma, ins[2], ins[3], ins[4]],
                        epsilon=float(_parse(attrs.get("eps"), 1e-3)))

    def op_LRN(self, ins, attrs):
        return self.add("LRN", ins[:1], size=int(_parse(attrs["nsize"])), alpha=float(_parse(attrs.get("alpha"), 1e-4)),
                        beta=float(_parse(attrs.get("beta"), 0.75)), bias=float(_parse(attrs.get("knorm"), 2.0)))

    def op_L2Normalization(self, ins, attrs):
        mode = attrs.get("mode", "instance")
        ndim = len(self.in_shape())
        axes = {"channel": [1], "instance": list(range(1, ndim)), "spatial": list(range(2, ndim))}[mode]
        sq = self.add("Mul", [ins[0], ins[0]])
        s = self.add("ReduceSum", [sq, self.ints(axes)], keepdims=1)
        eps = self.const(float(_parse(attrs.get("eps"), 1e-10)))
        return self.add("Div", [ins[0], self.add("Sqrt", [self.add("Add", [s, eps])])])

    def op_softmax(self, ins, attrs):
        if _parse(attrs.get("temperature")) not in (None, 1, 1.0):
            raise ConversionError("node %r: softmax temperature is not supported" % self.cur[0])
        return self.add("Softmax", ins[:1], axis=int(_parse(attrs.get("axis"), -1)))

    def op_log_softmax(self, ins, attrs):
        return self.add("LogSoftmax", ins[:1], axis=int(_parse(attrs.get("axis"), -1)))

    def op_SoftmaxActivation(self, ins, attrs):
        if attrs.get("mode", "instance") == "channel":
            return self.add("Softmax", ins[:1], axis=1)
        flat = self.add("Flatten", ins[:1], axis=1)
        return self.add("Reshape", [self.add("Softmax", [flat], axis=1), self.add("Shape", ins[:1])])

    def op_SoftmaxOutput(self, ins, attrs):
        # Inference: a softmax; over axis 1 for multi_output, else over the flattened instance.
        if _parse(attrs.get("multi_output"), False):
            return self.add("Softmax", ins[:1], axis=1)
        if _parse(attrs.get("preserve_shape"), False):
            return self.add("Softmax", ins[:1], axis=-1)
        flat = self.add("Flatten", ins[:1], axis=1)
        return self.add("Reshape", [self.add("Softmax", [flat], axis=1), self.add("Shape", ins[:1])])

    # -- pooling -----------------------------------------------------------------------------------
    def op_Pooling(self, ins, attrs):
        pool_type = attrs.get("pool_type", "max")
        if pool_type not in ("max", "avg"):
            raise ConversionError("node %r: Pooling pool_type %s is not supported" % (self.cur[0], pool_type))
        if _parse(attrs.get("global_pool"), False):
            return self.add("GlobalMaxPool" if pool_type == "max" else "GlobalAveragePool", ins[:1])
        kernel = _tuple(attrs["kernel"])
        n = len(kernel)
        stride = _tuple(attrs.get("stride"), (1,) * n) or (1,) * n
        pad = _tuple(attrs.get("pad"), (0,) * n) or (0,) * n
        conv = attrs.get("pooling_convention", "valid")
        if conv not in ("valid", "full"):
            raise ConversionError("node %r: pooling_convention %s is not supported" % (self.cur[0], conv))
        kw = dict(kernel_shape=list(kernel), strides=list(stride), pads=list(pad) * 2, ceil_mode=int(conv == "full"))
        if pool_type == "max":
            return self.add("MaxPool", ins[:1], **kw)
        # Runtimes disagree on the divisor of ceil-mode windows overhanging the padding, so the
        # runtime divides by the real pixels of each window (count_include_pad=0, unambiguous) and
        # a constant map rescales to MXNet's divisor where the padding counts: the window clipped
        # to the padded input, the overhang past it not. (An explicit Pad before the pool is no
        # way out: onnxruntime fuses Pad into AveragePool and then excludes it from the count.)
        out = self.add("AveragePool", ins[:1], count_include_pad=0, **kw)
        if not (_parse(attrs.get("count_include_pad"), True) and any(pad)):
            return out
        shape, out_shape = self.in_shape(), self.out_shape()
        if out_shape is None:
            raise ConversionError("node %r: the output shape of padded average pooling is unknown" % self.cur[0])
        ratio = np.ones((), np.float64)
        for i in range(n):
            start = np.arange(out_shape[2 + i]) * stride[i] - pad[i]
            end = start + kernel[i]
            real = np.minimum(end, shape[2 + i]) - np.maximum(start, 0)
            counted = np.minimum(end, shape[2 + i] + pad[i]) - start
            ratio = np.multiply.outer(ratio, real / counted.astype(np.float64))
        if np.all(ratio == 1):
            return out
        return self.add("Mul", [out, self.const(ratio.astype(np.float32))])

    # -- arithmetic --------------------------------------------------------------------------------
    def _binary(op):
        return lambda self, ins, attrs: self.add(op, ins[:2])

    op_elemwise_add = op_broadcast_add = op_broadcast_plus = op_add = _binary("Add")
    op_elemwise_sub = op_broadcast_sub = op_broadcast_minus = op_sub = _binary("Sub")
    op_elemwise_mul = op_broadcast_mul = op_mul = _binary("Mul")
    op_elemwise_div = op_broadcast_div = op_div = _binary("Div")
    op_broadcast_maximum = op_maximum = _binary("Max")
    op_broadcast_minimum = op_minimum = _binary("Min")
    op_broadcast_power = op_power = _binary("Pow")

    def _scalar_op(op, reverse=False):
        def f(self, ins, attrs):
            s = self.scalar(attrs)
            return self.add(op, [s, ins[0]] if reverse else [ins[0], s])
        return f

    op_plus_scalar = _scalar_op("Add")
    op_minus_scalar = _scalar_op("Sub")
    op_rminus_scalar = _scalar_op("Sub", True)
    op_mul_scalar = _scalar_op("Mul")
    op_div_scalar = _scalar_op("Div")
    op_rdiv_scalar = _scalar_op("Div", True)
    op_power_scalar = _scalar_op("Pow")
    op_rpower_scalar = _scalar_op("Pow", True)
    op_maximum_scalar = _scalar_op("Max")
    op_minimum_scalar = _scalar_op("Min")

    def _compare(op, scalar):
        # MXNet comparisons give 0/1 in the input's type; ONNX gives bool.
        def f(self, ins, attrs):
            other = self.scalar(attrs) if scalar else ins[1]
            return self.to_dtype(self.add(op, [ins[0], other]), self.in_dtype())
        return f

    op_greater_scalar = _compare("Greater", True)
    op_greater_equal_scalar = _compare("GreaterOrEqual", True)
    op_lesser_scalar = _compare("Less", True)
    op_lesser_equal_scalar = _compare("LessOrEqual", True)
    op_equal_scalar = _compare("Equal", True)
    op_broadcast_greater = op_greater = _compare("Greater", False)
    op_broadcast_greater_equal = op_greater_equal = _compare("GreaterOrEqual", False)
    op_broadcast_lesser = op_lesser = _compare("Less", False)
    op_broadcast_lesser_equal = op_lesser_equal = _compare("LessOrEqual", False)
    op_broadcast_equal = op_equal = _compare("Equal", False)

    def op_add_n(self, ins, attrs):
        return self.add("Sum", ins)

    op_ElementWiseSum = op_add_n

    def op_where(self, ins, attrs):
        return self.add("Where", [self.to_dtype(ins[0], np.bool_), ins[1], ins[2]])

    def op_Cast(self, ins, attrs):
        return self.to_dtype(ins[0], np.dtype(attrs["dtype"]))

    op_cast = op_Cast

    def _reduce(op):
        def f(self, ins, attrs):
            axis = _parse(attrs.get("axis"))
            keep = int(bool(_parse(attrs.get("keepdims"), False)))
            ndim = len(self.in_shape())
            if axis is None or axis == ():
                axes = list(range(ndim))
            else:
                axes = [a % ndim for a in (axis if isinstance(axis, (tuple, list)) else [axis])]
                if _parse(attrs.get("exclude"), False):  # reduce over every axis but these
                    axes = [a for a in range(ndim) if a not in axes]
            if op == "ReduceSum":
                return self.add(op, [ins[0], self.ints(axes)], keepdims=keep)
            return self.add(op, ins[:1], axes=axes, keepdims=keep)
        return f

    op_sum = _reduce("ReduceSum")
    op_mean = _reduce("ReduceMean")
    op_max = _reduce("ReduceMax")
    op_min = _reduce("ReduceMin")

    # -- shape ----------------------------------------------------------------------------------
    def op_Reshape(self, ins, attrs):
        if _parse(attrs.get("reverse"), False):
            codes = None
        else:
            codes = _tuple(attrs.get("shape"))
        if codes is not None and all(c >= -1 for c in codes) and list(codes).count(-1) <= 1:
            # 0 (copy) and -1 (infer) mean the same in ONNX.
            return self.add("Reshape", [ins[0], self.ints(codes)])
        # -2/-3/-4 (and reverse): resolved against the shapes known at export time.
        out = list(self.out_shape() or ())
        if not out:
            raise ConversionError("node %r: Reshape %s needs the output shape, unknown at export time"
                                  % (self.cur[0], attrs.get("shape")))
        if self.dynamic_batch:
            if out[0] != self.in_shape()[0]:
                raise ConversionError("node %r: Reshape %s changes the batch axis; export it without "
                                      "dynamic_batch" % (self.cur[0], attrs.get("shape")))
            out[0] = 0
        return self.add("Reshape", [ins[0], self.ints(out)])

    op_reshape = op_Reshape

    def op_transpose(self, ins, attrs):
        axes = _tuple(attrs.get("axes"))
        if not axes:
            axes = tuple(reversed(range(len(self.in_shape()))))
        return self.add("Transpose", ins[:1], perm=list(axes))

    def op_expand_dims(self, ins, attrs):
        return self.add("Unsqueeze", [ins[0], self.ints([int(_parse(attrs["axis"]))])])

    def op_Concat(self, ins, attrs):
        return self.add("Concat", ins, axis=int(_parse(attrs.get("dim"), 1)))

    op_concat = op_Concat

    def op_stack(self, ins, attrs):
        axis = int(_parse(attrs.get("axis"), 0))
        ndim = len(self.in_shape())
        axis = axis + ndim + 1 if axis < 0 else axis
        return self.add("Concat", [self.add("Unsqueeze", [x, self.ints([axis])]) for x in ins], axis=axis)

    def op_SliceChannel(self, ins, attrs):
        n = int(_parse(attrs["num_outputs"]))
        axis = int(_parse(attrs.get("axis"), 1))
        squeeze = _parse(attrs.get("squeeze_axis"), False)
        size = self.in_shape()[axis]
        outs = self.add("Split", [ins[0], self.ints([size // n] * n)], n_out=n, axis=axis)
        outs = outs if isinstance(outs, list) else [outs]
        if squeeze:
            outs = [self.add("Squeeze", [o, self.ints([axis])]) for o in outs]
        return outs

    op_split = op_SliceChannel

    def op_slice_axis(self, ins, attrs):
        axis = int(_parse(attrs["axis"]))
        begin = int(_parse(attrs.get("begin"), 0))
        end = _parse(attrs.get("end"))
        end = _INT64_MAX if end is None else int(end)
        return self.add("Slice", [ins[0], self.ints([begin]), self.ints([end]), self.ints([axis])])

    def op_slice(self, ins, attrs):
        begin, end = _tuple(attrs.get("begin")), _tuple(attrs.get("end"))
        step = _tuple(attrs.get("step")) or (None,) * len(begin)
        b, e, a, s = [], [], [], []
        for axis, (lo, hi, st) in enumerate(zip(begin, end, step)):
            st = 1 if st is None else int(st)
            lo = (0 if st > 0 else -1) if lo is None else int(lo)
            hi = (_INT64_MAX if st > 0 else _INT64_MIN) if hi is None else int(hi)
            if lo in (0,) and hi == _INT64_MAX and st == 1:
                continue
            b.append(lo), e.append(hi), a.append(axis), s.append(st)
        if not a:
            return self.add("Identity", ins[:1])
        return self.add("Slice", [ins[0], self.ints(b), self.ints(e), self.ints(a), self.ints(s)])

    def op_Crop(self, ins, attrs):
        shape, out = self.in_shape(), self.out_shape()
        if _parse(attrs.get("center_crop"), False):
            off = [(shape[2 + i] - out[2 + i]) // 2 for i in range(2)]
        else:
            off = list(_tuple(attrs.get("offset"), (0, 0)) or (0, 0))
        return self.add("Slice", [ins[0], self.ints(off), self.ints([off[i] + out[2 + i] for i in range(2)]),
                                  self.ints([2, 3])])

    def op_reverse(self, ins, attrs):
        axes = list(_tuple(attrs["axis"]))
        return self.add("Slice", [ins[0], self.ints([-1] * len(axes)), self.ints([_INT64_MIN] * len(axes)),
                                  self.ints(axes), self.ints([-1] * len(axes))])

    op_flip = op_reverse

    def op_tile(self, ins, attrs):
        reps = list(_tuple(attrs["reps"]))
        ndim = len(self.in_shape())
        if len(reps) < ndim:
            reps = [1] * (ndim - len(reps)) + reps
        elif len(reps) > ndim:
            x = self.add("Reshape", [ins[0], self.ints([1] * (len(reps) - ndim) + list(self.in_shape()))])
            return self.add("Tile", [x, self.ints(reps)])
        return self.add("Tile", [ins[0], self.ints(reps)])

    def op_broadcast_axis(self, ins, attrs):
        axes = _tuple(attrs.get("axis"))
        sizes = _tuple(attrs.get("size"))
        reps = [1] * len(self.in_shape())
        for a, s in zip(axes, sizes):
            reps[a] = s
        return self.add("Tile", [ins[0], self.ints(reps)])

    op_broadcast_to_axis = op_broadcast_axis

    def _filled(self, x, value):
        dt = self.in_dtype()
        return self.add("ConstantOfShape", [self.add("Shape", [x])],
                        value=self.onnx.numpy_helper.from_array(np.array([value], dt)))

    def op_zeros_like(self, ins, attrs):
        return self._filled(ins[0], 0)

    def op_ones_like(self, ins, attrs):
        return self._filled(ins[0], 1)

    def op_shape_array(self, ins, attrs):
        return self.add("Shape", ins[:1])

    def op_contrib_arange_like(self, ins, attrs):
        axis = _parse(attrs.get("axis"))
        start = float(_parse(attrs.get("start"), 0.0))
        step = float(_parse(attrs.get("step"), 1.0))
        if int(_parse(attrs.get("repeat"), 1)) != 1:
            raise ConversionError("node %r: arange_like repeat is not supported" % self.cur[0])
        if axis is None:
            n = self.add("ReduceProd", [self.add("Shape", ins[:1])], keepdims=0)
        else:
            n = self.add("Squeeze", [self.dim(ins[0], int(axis)), self.ints([0])])
        n = self.to_dtype(n, np.float32)
        limit = self.add("Add", [self.add("Mul", [n, self.const(step)]), self.const(start)])
        r = self.add("Range", [self.const(start), limit, self.const(step)])
        if axis is None:
            return self.add("Reshape", [r, self.add("Shape", ins[:1])])
        return r

    # -- indexing --------------------------------------------------------------------------------
    def op_take(self, ins, attrs):
        axis = int(_parse(attrs.get("axis"), 0))
        mode = attrs.get("mode", "clip")
        idx = self.to_dtype(ins[1], np.int64)
        # The axis' size at run time: with a symbolic batch it is not the export-time one.
        n = self.add("Squeeze", [self.dim(ins[0], axis), self.ints([0])])
        if mode == "clip":
            last = self.add("Sub", [n, self.const(1, np.int64)])
            idx = self.add("Clip", [idx, self.const(0, np.int64), last])
        elif mode == "wrap":
            idx = self.add("Mod", [idx, n])
        return self.add("Gather", [ins[0], idx], axis=axis)

    def op_gather_nd(self, ins, attrs):
        # MXNet indexes with the first axis of `indices`, ONNX with the last.
        nd = len(self.in_shape(1))
        idx = self.add("Transpose", [self.to_dtype(ins[1], np.int64)], perm=list(range(1, nd)) + [0])
        return self.add("GatherND", [ins[0], idx])

    def op_topk(self, ins, attrs):
        axis = int(_parse(attrs.get("axis"), -1))
        k = int(_parse(attrs.get("k"), 1))
        ret = attrs.get("ret_typ", "indices")
        largest = int(not _parse(attrs.get("is_ascend"), False))
        dtype = np.dtype(attrs.get("dtype", "float32"))
        if ret not in ("indices", "value", "both"):
            raise ConversionError("node %r: topk ret_typ %s is not supported" % (self.cur[0], ret))
        if k < 1:
            kk = self.dim(ins[0], axis)
        else:
            kk = self.ints([k])
        values, indices = self.add("TopK", [ins[0], kk], n_out=2, axis=axis, largest=largest, sorted=1)
        if ret == "value":
            return values
        indices = self.to_dtype(indices, dtype)
        return indices if ret == "indices" else [values, indices]

    def op_argsort(self, ins, attrs):
        axis = int(_parse(attrs.get("axis"), -1))
        largest = int(not _parse(attrs.get("is_ascend"), True))
        dtype = np.dtype(attrs.get("dtype", "float32"))
        _, indices = self.add("TopK", [ins[0], self.dim(ins[0], axis)], n_out=2, axis=axis, largest=largest,
                              sorted=1)
        return self.to_dtype(indices, dtype)

    def op_contrib_box_nms(self, ins, attrs):
        """MXNet's box_nms on rows ``[id, score, x1, y1, x2, y2]`` through ONNX NonMaxSuppression.

        Same output as MXNet: per batch item the kept rows in descending score
        order, then rows of -1. Classes are kept apart by shifting each class's
        boxes by a multiple of a distance larger than any box (exact for one class).
        """
        p = lambda k, d: _parse(attrs.get(k), d)  # noqa: E731
        coord, score_i, id_i = int(p("coord_start", 2)), int(p("score_index", 1)), int(p("id_index", -1))
        if (attrs.get("in_format", "corner") != "corner" or attrs.get("out_format", "corner") != "corner"
                or int(p("topk", -1)) != -1 or int(p("background_id", -1)) != -1):
            raise ConversionError("node %r: box_nms is exported for corner boxes, topk=-1 and background_id=-1 "
                                  "only" % self.cur[0])
        shape = self.in_shape()
        if len(shape) != 3:
            raise ConversionError("node %r: box_nms is exported for (batch, rows, width) input only" % self.cur[0])
        rows = ins[0]
        sl = lambda b, e: self.add("Slice", [rows, self.ints([b]), self.ints([e]), self.ints([2])])  # noqa: E731
        boxes = sl(coord, coord + 4)                                                      # (N, M, 4)
        scores = self.add("Squeeze", [sl(score_i, score_i + 1), self.ints([2])])          # (N, M)
        valid_thresh = float(p("valid_thresh", 0.0))
        if id_i >= 0 and not p("force_suppress", False):
            ids = sl(id_i, id_i + 1)                                                      # (N, M, 1)
            span = self.add("Sub", [self.add("ReduceMax", [boxes], keepdims=0),
                                    self.add("ReduceMin", [boxes], keepdims=0)])
            offset = self.add("Mul", [ids, self.add("Add", [span, self.const(1.0)])])
            boxes = self.add("Add", [boxes, offset])
        # Rows below valid_thresh never enter; ONNX keeps scores > score_threshold, MXNet >= valid_thresh.
        thresh = float(np.nextafter(np.float32(valid_thresh), np.float32(-np.inf)))
        m = self.dim(rows, 1)
        sel = self.add("NonMaxSuppression", [boxes, self.add("Unsqueeze", [scores, self.ints([1])]), m,
                                              self.const([float(p("overlap_thresh", 0.5))]), self.const([thresh])],
                       center_point_box=0)                                                # (K, 3)
        b = self.add("Gather", [sel, self.ints([0])], axis=1)                             # (K, 1)
        i = self.add("Gather", [sel, self.ints([2])], axis=1)
        picked = self.add("GatherND", [rows, self.add("Concat", [b, i], axis=1)])         # (K, width)
        # ONNX lists each batch item's picks in score order, items in order: rank within the item.
        b_row = self.add("Reshape", [b, self.ints([1, -1])])
        earlier = self.to_dtype(self.add("Less", [b_row, b]), np.int64)                 # (K, K)
        before = self.add("ReduceSum", [earlier, self.ints([1])], keepdims=1)           # (K, 1)
        k_count = self.add("Squeeze", [self.dim(sel, 0), self.ints([0])])
        pos = self.add("Range", [self.const(0, np.int64), k_count, self.const(1, np.int64)])
        pos = self.add("Unsqueeze", [pos, self.ints([1])])
        rank = self.add("Sub", [pos, before])
        target = self.add("Concat", [b, rank], axis=1)                                    # (K, 2)
        empty = self.add("ConstantOfShape", [self.add("Shape", [rows])],
                         value=self.onnx.numpy_helper.from_array(np.array([-1], self.in_dtype())))
        return self.add("ScatterND", [empty, target, picked])

    def op_LinearRegressionOutput(self, ins, attrs):
        return self.add("Identity", ins[:1])

    op_MAERegressionOutput = op_LinearRegressionOutput

    def op_LogisticRegressionOutput(self, ins, attrs):
        return self.add("Sigmoid", ins[:1])

    del _unary, _binary, _scalar_op, _compare, _reduce


def _as_graph(net, input_shapes):
    """(symbol, params, input names, output names) of a ConvertedNet, checkpoint prefix or HybridBlock."""
    if hasattr(net, "symbol") and hasattr(net, "arg_params"):
        params = dict(net.arg_params)
        params.update(net.aux_params)
        shapes = dict(net.input_shapes)
        shapes.update(input_shapes or {})
        return net.symbol, params, list(net.input_names), list(net.output_names), shapes
    if isinstance(net, (str, os.PathLike)):
        prefix = os.fspath(net)
        if prefix.endswith("-symbol.json"):
            prefix = prefix[:-len("-symbol.json")]
        try:
            symbol, args, auxs = mx.model.load_checkpoint(prefix, 0)
        except (OSError, mx.base.MXNetError) as e:
            raise ConversionError("cannot load %s-symbol.json / -0000.params: %s"
                                  % (prefix, str(e).strip().splitlines()[0])) from e
        params = dict(args)
        params.update(auxs)
        inputs = [n for n in symbol.list_inputs() if n not in params]
        return symbol, params, inputs, None, dict(input_shapes or {})
    if isinstance(net, mx.gluon.HybridBlock):
        if not input_shapes:
            raise ConversionError("export_onnx of a Gluon block needs input_shapes (name -> shape)")
        names = list(input_shapes)
        if isinstance(net, mx.gluon.SymbolBlock):
            names = [v.name for v in net._cached_graph[0]] if getattr(net, "_cached_graph", None) else names
        out = net(*[mx.sym.var(n) for n in names])
        symbol = out if isinstance(out, mx.sym.Symbol) else mx.sym.Group(list(out))
        params = {}
        for p in net.collect_params().values():
            try:
                params[p.var().name] = p.data(p.list_ctx()[0])
            except (RuntimeError, mx.gluon.parameter.DeferredInitializationError) as e:
                raise ConversionError("parameter %r is not initialized (run the block once first)" % p.name) from e
        outputs = getattr(net, "caffe_output_names", None)
        return symbol, params, names, outputs, dict(input_shapes)
    if isinstance(net, tuple) and len(net) == 3:
        symbol, args, auxs = net
        params = dict(args)
        params.update(auxs)
        inputs = [n for n in symbol.list_inputs() if n not in params]
        return symbol, params, inputs, None, dict(input_shapes or {})
    raise TypeError("export_onnx takes a ConvertedNet, a checkpoint prefix, a HybridBlock or "
                    "(symbol, arg_params, aux_params), got %s" % type(net).__name__)


def _batch_dependent_dims(symbol, params, shapes, n_outputs):
    """For each output, the axes whose size changes with the inputs' batch size."""
    known = {k: tuple(v.shape) for k, v in params.items()}
    outs = []
    for extra in (0, 1):
        given = dict(known)
        given.update({k: (s[0] + extra,) + tuple(s[1:]) for k, s in shapes.items()})
        try:
            _, out, _ = symbol.infer_shape_partial(**given)
        except mx.base.MXNetError as e:
            raise ConversionError("dynamic_batch: the net does not take another batch size (%s)"
                                  % str(e).strip().splitlines()[0]) from e
        if any(o is None or not len(o) for o in out):
            raise ConversionError("dynamic_batch: the output shapes cannot be inferred at another batch size")
        outs.append(out)
    return [[i for i, (a, b) in enumerate(zip(outs[0][j], outs[1][j])) if a != b] for j in range(n_outputs)]


def to_onnx_model(net, input_shapes=None, opset=DEFAULT_OPSET, dynamic_batch=False, check=True):
    """Build the ONNX ``ModelProto`` of a net without writing it.

    Parameters
    ----------
    net, input_shapes, opset, dynamic_batch
        As for :func:`export_onnx`.
    check : bool
        Run ``onnx.checker.check_model(model, full_check=True)`` (shape
        inference included) and raise ConversionError if it fails.

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    ConversionError
        As for :func:`export_onnx`, but nothing is written.
    """
    onnx = _onnx()
    if not 13 <= opset <= 17:
        # 18 turned the axes of ReduceMean/Max/Min into inputs; the emitter writes opset 13-17.
        raise ConversionError("opset %d: export_onnx writes opset 13 to 17" % opset)
    symbol, params, inputs, outputs, shapes = _as_graph(net, input_shapes)
    graph = json.loads(symbol.tojson())
    labels = {graph["nodes"][i]["name"] for i in _label_only_nodes(graph)}
    args = set(symbol.list_inputs())
    inputs = [n for n in inputs if n in args and n not in labels]
    missing = [n for n in inputs if n not in shapes]
    if missing:
        raise ConversionError("no shape for input(s) %s: pass input_shapes={name: shape}" % ", ".join(missing))
    params = {k: v for k, v in params.items() if k in args}
    shapes = {k: tuple(int(d) for d in shapes[k]) for k in inputs}
    heads = symbol.list_outputs()
    if outputs is None or len(outputs) != len(heads):
        outputs = [h[:-len("_output")] if h.endswith("_output") else h for h in heads]
    if len(set(outputs)) != len(outputs):
        outputs = ["output%d" % i for i in range(len(heads))]
    # An ONNX value is produced once: an output that is also an input (Caffe's in-place layer on
    # an input blob) gets a suffix.
    outputs = [o + "_output" if o in inputs else o for o in outputs]
    emitter = _Emitter(symbol, params, shapes, opset, dynamic_batch)
    out_names = emitter.run(outputs)
    helper = onnx.helper

    head_keys = [(emitter.graph["nodes"][h[0]]["name"], h[1]) for h in emitter.graph["heads"]]
    varying = _batch_dependent_dims(symbol, params, shapes, len(heads)) if dynamic_batch else None

    def value_info(name, k, shape, dtype):
        if shape is None:
            raise ConversionError("the shape of output %r is unknown at export time" % name)
        dims = list(shape)
        if varying is not None:
            for i in varying[k]:
                # The batch axis itself, or a size that grows with it (SSD's N * keep_top_k rows).
                dims[i] = "batch" if i == 0 and dims[0] == next(iter(shapes.values()))[0] else "%s_%d" % (name, i)
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), dims)

    graph_inputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT,
                                                  (["batch"] if dynamic_batch else []) + list(shapes[n])[int(dynamic_batch):])
                    for n in inputs]
    graph_outputs = [value_info(n, i, emitter.shape.get(k), emitter.dtype.get(k, np.float32))
                     for i, (n, k) in enumerate(zip(out_names, head_keys))]
    # Parameters no node reads (BatchNorm's gamma under fix_gamma=True) are left out.
    used = {name for node in emitter.nodes for name in node.input}
    initializers = [t for t in emitter.initializers if t.name in used]
    graph = helper.make_graph(emitter.nodes, "gluon_caffe", graph_inputs, graph_outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="gluon_caffe")
    model.ir_version = _IR_VERSION
    if check:
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as e:  # onnx raises ValidationError / InferenceError
            raise ConversionError("the exported ONNX model does not check: %s" % str(e).strip().splitlines()[0]) from e
    return model


def export_onnx(net, path, input_shapes=None, opset=DEFAULT_OPSET, *, dynamic_batch=False, overwrite=False):
    """Export a converted Caffe model or a hybridizable Gluon net to an ONNX file.

    The graph is emitted by gluon_caffe itself from the MXNet symbol (not by
    ``mx.onnx.export_model``): weights are initializers only (not graph
    inputs), the opset is the one asked for, and each MXNet operator keeps its
    exact semantics (``fix_gamma``, Deconvolution's bias, Reshape's special
    codes, PReLU's slope shape, Caffe's ceil-mode pooling). The model passes
    ``onnx.checker.check_model(model, full_check=True)`` before it is written.

    Parameters
    ----------
    net : ConvertedNet, str, mxnet.gluon.HybridBlock or tuple
        What :func:`gluon_caffe.convert` returns with ``details=True``; a
        ``PREFIX`` of ``PREFIX-symbol.json`` + ``PREFIX-0000.params``; an
        initialized Gluon block; or ``(symbol, arg_params, aux_params)``.
    path : str or os.PathLike
        The ``.onnx`` file to write (atomically: a temporary file renamed).
    input_shapes : dict of str to tuple, optional
        Input name -> shape. A ConvertedNet has the prototxt's shapes; these
        override them. Required for blocks and prefixes.
    opset : int
        ONNX opset of the default domain, 13 to 17.
    dynamic_batch : bool
        Declare the first axis of inputs and outputs symbolic (``batch``).
        Shapes are still inferred at ``input_shapes``; Reshape codes -2/-3/-4
        are resolved there.
    overwrite : bool
        Replace an existing ``path``.

    Returns
    -------
    onnx.ModelProto
        The model written.

    Raises
    ------
    ConversionError
        The net holds CaffeLayers (``Custom`` gluon_caffe.CaffeOp or
        ``gluon_caffe_CaffeOp``, all named) or other operators with no ONNX mapping, a shape is
        missing, the output exists (without ``overwrite``) or cannot be
        written.
    """
    with atomic_outputs([path], overwrite, ConversionError) as (tmp,):
        model = to_onnx_model(net, input_shapes, opset=opset, dynamic_batch=dynamic_batch)
        with open(tmp, "wb") as f:
            f.write(model.SerializeToString())
    return model
