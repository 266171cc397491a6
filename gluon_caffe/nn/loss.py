"""CaffeLossBlock: a Caffe loss layer (SoftmaxWithLoss, EuclideanLoss, ...) as a Gluon HybridBlock."""

import mxnet as mx

from .layer import _CaffeBlock

__all__ = ["CaffeLossBlock"]


class CaffeLossBlock(_CaffeBlock):
    """A Caffe loss layer run by real Caffe: ``loss = block(data, label)``.

    Parameters
    ----------
    prototxt : str
        The loss layer, e.g. ``layer { type: "SoftmaxWithLoss" loss_param { ignore_label: 0 } }``.
    grad_scale : float
        Multiplies Caffe's gradient (the loss's weight, as in the old MXNet CaffeLoss).
    num_data : int
        Inputs, label(s) included (2: data and label; ContrastiveLoss takes 3).
    num_out : int
        Outputs; the first is the loss.
    phase, weight_initializer, bias_initializer, use_fillers, dtype, prefix, params
        As for :class:`CaffeLayer`.

    Notes
    -----
    The output is Caffe's loss as its top holds it, shape ``(1,)``. Backward gives Caffe's own
    gradient times the prototxt's ``loss_weight`` times `grad_scale` times the gradient arriving at
    the output (1 for ``loss.backward()``). Labels get no gradient where Caffe refuses one. A label
    whose dtype differs from the data's is cast to it (Caffe holds labels as float blobs).
    """

    _loss = True

    def __init__(self, prototxt, grad_scale=1.0, num_data=2, num_out=1, phase=None,
                 weight_initializer=None, bias_initializer=None, use_fillers=True, dtype="float32",
                 prefix=None, params=None):
        super().__init__(prototxt, num_data, num_out, None, phase, grad_scale, weight_initializer,
                         bias_initializer, use_fillers, dtype, prefix, params)
        self._grad_scale = float(grad_scale)

    @property
    def grad_scale(self):
        return self._grad_scale

    def _prepare(self, inputs):
        dtype = inputs[0].dtype
        return [inputs[0]] + [a.astype(dtype, copy=False) if isinstance(a, mx.nd.NDArray) else a
                              for a in inputs[1:]]
