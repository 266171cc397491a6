"""What a translator may ask while converting: weights, shapes, parameter variables, names, errors."""

import mxnet as mx
import numpy as np

from ..errors import ConversionError, layer_context

__all__ = ["ConvertContext", "PLACEHOLDER"]

#: Name prefix of the variables a layer is translated on (its bottoms, spliced in afterwards).
PLACEHOLDER = "__gc_bottom"


class ConvertContext(object):
    """State shared by the translators of one conversion.

    Parameters
    ----------
    weights : dict or None
        Layer name -> list of float32 arrays in Caffe layout, or ``None`` when
        converting a prototxt without a caffemodel (parameters stay unset).
    input_shapes : dict
        Input variable name -> shape, for shape inference (may be partial).
    inference : bool
        The graph is for inference only: a translator may turn values computed
        from parameters or shapes into constants (no gradients needed).

    Attributes
    ----------
    fixed_input_size : list of str
        Layers whose constants hold for the convert-time input shapes only
        (PriorBox in an inference graph): the net then takes only those sizes.
    """

    def __init__(self, weights=None, input_shapes=None, inference=False):
        self.weights = weights
        self.inference = bool(inference)
        self.input_shapes = dict(input_shapes or {})
        self.param_shapes = {}
        self.fixed_input_size = []
        self._used_names = set()
        #: (symbol, shape) of the bottoms of the layer being translated on them directly
        self.bottoms = ()

    # -- errors ---------------------------------------------------------------------------
    @staticmethod
    def error(layer, message, *args):
        """A ConversionError that names ``layer``: ``layer 'x' (Type): message``."""
        if args:
            message = message % args
        return ConversionError("%s: %s" % (layer_context(layer.name, layer.type), message))

    # -- names ----------------------------------------------------------------------------
    def op_name(self, layer, suffix=None):
        """Unique MXNet node name for ``layer`` (with ``suffix`` for helper nodes)."""
        base = layer.name or layer.type
        if suffix:
            base = "%s_%s" % (base, suffix)
        name, i = base, 0
        while name in self._used_names:
            i += 1
            name = "%s_%d" % (base, i)
        self._used_names.add(name)
        return name

    def reserve(self, name):
        """Mark a name (an input variable) as used."""
        self._used_names.add(name)

    def var(self, name, shape=None, value=None):
        """A parameter variable; its shape feeds later shape inference."""
        if value is not None:
            shape = tuple(value.shape)
        if shape is not None:
            self.param_shapes[name] = tuple(int(s) for s in shape)
        self._used_names.add(name)
        return mx.sym.var(name)

    # -- weights --------------------------------------------------------------------------
    @property
    def has_weights(self):
        """True when a caffemodel was given (parameters get values)."""
        return self.weights is not None

    def blobs(self, layer, needed, names=()):
        """The Caffe blobs of ``layer``, or ``None`` without a caffemodel.

        Parameters
        ----------
        needed : int
            How many blobs the layer must have (given its prototxt).
        names : sequence of str
            What each blob is, for the error message.

        Raises
        ------
        ConversionError
            The caffemodel has no (or too few) blobs for this layer.
        """
        if self.weights is None:
            return None
        blobs = self.weights.get(layer.name)
        if needed and not blobs:
            raise self.error(layer, "the caffemodel has no weights for this layer "
                             "(expected %d blobs: %s)", needed, ", ".join(names) or "?")
        blobs = list(blobs or ())
        if len(blobs) < needed:
            raise self.error(layer, "the caffemodel has %d blobs for this layer, the prototxt needs %d (%s)",
                             len(blobs), needed, ", ".join(names) or "?")
        return blobs

    def check_blob(self, layer, index, blob, expected, what):
        """Return ``blob`` with shape ``expected`` or raise naming the prototxt field.

        ``expected`` may hold ``None`` for a dimension the prototxt does not fix.
        A legacy 4-D blob (num, channels, height, width) whose shape is
        ``expected`` padded with leading ones is reshaped, as Caffe accepts it.
        """
        expected = tuple(expected)
        shape = tuple(blob.shape)

        def same(a, b):
            return len(a) == len(b) and all(e is None or e == s for s, e in zip(a, b))

        if same(shape, expected):
            return blob
        if expected == () and blob.size == 1:
            return blob.reshape(())
        if blob.ndim == 4 and len(expected) <= 4:
            padded = (1,) * (4 - len(expected)) + expected
            if same(shape, padded):
                return blob.reshape(shape[4 - len(expected):])
        raise self.error(layer, "blobs[%d] (%s) in the caffemodel has shape %s but %s needs %s",
                         index, what[0], shape, what[1],
                         "(" + ", ".join("?" if e is None else str(e) for e in expected) + ")")

    # -- shapes ---------------------------------------------------------------------------
    def shape(self, sym, layer=None):
        """Inferred shape of ``sym``'s (single) output, or ``None`` when unknown.

        With ``layer`` given, an unknown shape raises a ConversionError instead.
        """
        known = self.known_shape(sym)
        if known is not None:
            return known
        try:
            _, out, _ = sym.infer_shape_partial(**self._known_shapes(sym))
        except mx.base.MXNetError as exc:
            if layer is not None:
                raise self.error(layer, "shape inference failed on its input: %s",
                                 str(exc).splitlines()[0]) from None
            return None
        shape = tuple(out[0]) if out and out[0] is not None else ()
        if not shape or any(d <= 0 for d in shape):
            if layer is not None:
                raise self.error(layer, "needs the shape of its input, which is unknown here: give "
                                 "the net's input shapes (Input layer, input_dim or input_shapes=)")
            return None
        return shape

    def known_shape(self, sym):
        """The shape of a bottom of the layer being translated, if known without inference."""
        for bottom, shape in self.bottoms:
            if bottom is sym:
                return tuple(shape)
        known = self.input_shapes.get(sym.name)
        if known is not None and sym.name.startswith(PLACEHOLDER) and all(d > 0 for d in known):
            return tuple(known)  # a layer's bottom, translated on a placeholder of known shape
        return None

    def _known_shapes(self, sym):
        """The input and parameter shapes known for ``sym``'s arguments and auxiliary states.

        Looked up by ``sym``'s own names: a conversion holds hundreds of parameter shapes and a
        layer's graph a handful of arguments."""
        known = {}
        for names in (sym.list_arguments(), sym.list_auxiliary_states()):
            for k in names:
                v = self.param_shapes.get(k)
                if v is None:
                    v = self.input_shapes.get(k)
                if v is not None:
                    known[k] = v
        return known

    def shapes(self, group):
        """Inferred shape of each of ``group``'s outputs (None where unknown), never raising."""
        try:
            _, out, _ = group.infer_shape_partial(**self._known_shapes(group))
        except mx.base.MXNetError:
            return [None] * len(group.list_outputs())
        return [tuple(o) if o and all(d > 0 for d in o) else None for o in (out or [])]

    @staticmethod
    def canonical_axis(layer, axis, ndim, what="axis"):
        """Caffe's CanonicalAxisIndex: negative axes count from the end."""
        if not -ndim <= axis < ndim:
            raise ConvertContext.error(layer, "%s %d is out of range for a %d-D input", what, axis, ndim)
        return axis + ndim if axis < 0 else axis

    @staticmethod
    def f32(a):
        """A float32 C-contiguous copy-if-needed of ``a`` (never a view the caller may not own)."""
        return np.ascontiguousarray(a, dtype=np.float32)
