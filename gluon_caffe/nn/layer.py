"""CaffeLayer: any Caffe layer, given as prototxt text, as a Gluon HybridBlock."""

import mxnet as mx

from ..errors import CaffeShapeError
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
        self._op_kwargs = op_kwargs(self._spec, loss=self._loss, grad_scale=grad_scale,
                                    top_grad=True, phase=phase)
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
                param = self.params.get(
                    blob.role, shape=None, init=init, dtype=dtype, allow_deferred_init=True,
                    grad_req="null" if blob.aux else "write", differentiable=not blob.aux,
                    lr_mult=1.0 if blob.aux else blob.lr_mult, wd_mult=blob.decay_mult)
                setattr(self, blob.role, param)

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
        # With arrays in hand, check them here: inside MXNet a Caffe failure loses its name.
        if isinstance(x, mx.nd.NDArray):
            inputs = self._prepare([x] + list(args))
            info = check_inputs(self._spec, inputs)
            for blob in self._spec.blobs:
                have = getattr(self, blob.role).shape
                want = mx_shape(info.param_shapes[blob.index])
                if have is not None and all(have) and tuple(have) != want:
                    raise CaffeShapeError(
                        "%s: inputs of shapes %s need %s of shape %r, the parameter has %r"
                        % (self._spec.context, [tuple(a.shape) for a in inputs], blob.role, want, tuple(have)))
            x, args = inputs[0], inputs[1:]
        return super().forward(x, *args)

    def _prepare(self, inputs):
        return inputs

    def hybrid_forward(self, F, x, *args, **params):
        inputs = [x] + list(args)
        inputs += [params[b.role] for b in self._spec.args]
        inputs += [params[b.role] for b in self._spec.auxs]
        return F.Custom(*inputs, **self._op_kwargs)

    def __repr__(self):
        return "%s(%s %r, inputs=%d, outputs=%d, params=%s)" % (
            type(self).__name__, self._spec.type, self._spec.name, self._spec.num_data,
            self._spec.num_out, self.param_roles)


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
