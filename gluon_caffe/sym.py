"""Caffe layers and losses as MXNet symbols: the old ``mx.sym.CaffeOp`` / ``mx.sym.CaffeLoss`` API."""

import mxnet as mx

from .nn._op import CaffeFiller, data_names, describe, op_kwargs

__all__ = ["CaffeOp", "CaffeLoss"]


def _build(data, kwargs, prototxt, num_data, num_out, num_weight, name, loss, grad_scale, phase, attr):
    spec = describe(prototxt, num_data, num_out, num_weight)
    name = mx.name.NameManager.current.get(name, "caffeloss" if loss else "caffeop")
    names = data_names(spec.num_data, loss)
    inputs = list(data)
    for key in names[len(inputs):]:
        if key not in kwargs:
            raise TypeError("%s: missing input %r (it takes %s)" % (spec.context, key, ", ".join(names)))
        inputs.append(kwargs.pop(key))
    if len(inputs) != spec.num_data:
        raise TypeError("%s takes %d inputs (%s), got %d"
                        % (spec.context, spec.num_data, ", ".join(names), len(inputs)))
    blobs = []
    for blob in spec.args + spec.auxs:
        given = kwargs.pop(blob.role, None)
        if given is None:
            extra = {}
            if blob.lr_mult not in (0.0, 1.0):
                extra["lr_mult"] = blob.lr_mult
            if blob.decay_mult != 1.0:
                extra["wd_mult"] = blob.decay_mult
            if blob.aux or blob.role not in ("weight", "bias"):
                # MXNet's initializers only know weight/bias/moving_* names; these start as Caffe's.
                extra["init"] = CaffeFiller(spec.text, blob.index, spec.num_out)
            given = mx.sym.Variable("%s_%s" % (name, blob.role), **extra)
        blobs.append(given)
    if kwargs:
        raise TypeError("%s: unexpected arguments %s" % (spec.context, ", ".join(sorted(kwargs))))
    attrs = op_kwargs(spec, loss=loss, grad_scale=grad_scale, top_grad=False, phase=phase)
    return mx.sym.Custom(*(inputs + blobs), name=name, attr=attr, **attrs)


def CaffeOp(*data, prototxt, num_data=1, num_out=1, num_weight=None, name=None, phase=None, attr=None,
            **kwargs):
    """A Caffe layer as a symbol, like the old ``mx.sym.CaffeOp``.

    Parameters
    ----------
    *data : Symbol
        Inputs in order (or give them as ``data_0=...``, ``data_1=...``).
    prototxt : str
        The layer's prototxt text.
    num_data, num_out : int
        Inputs and outputs.
    num_weight : int, optional
        Number of parameter blobs; checked against Caffe (the old API required it).
    name : str, optional
        Symbol name; parameters are ``<name>_weight``, ``<name>_bias``, ... (pass a Symbol as
        ``weight=...`` to use your own variable).
    phase : {None, 'train', 'test'}
        None follows the executor's ``is_train``.

    Returns
    -------
    Symbol

    Examples
    --------
    >>> data = mx.sym.Variable('data')
    >>> fc1 = CaffeOp(data_0=data, num_weight=2, name='fc1',
    ...               prototxt='layer{type:"InnerProduct" inner_product_param{num_output: 128} }')
    """
    return _build(data, kwargs, prototxt, num_data, num_out, num_weight, name, False, 1.0, phase, attr)


def CaffeLoss(*data, prototxt, grad_scale=1.0, num_data=2, num_out=1, name=None, phase=None, attr=None,
              **kwargs):
    """A Caffe loss layer as a symbol, like the old ``mx.sym.CaffeLoss``.

    Inputs are ``data`` and ``label`` (``data_0``... when `num_data` is not 2). The output is Caffe's
    loss; backward needs no head gradient (it is a loss) and gives Caffe's gradient times the
    prototxt's loss_weight times `grad_scale`.

    Examples
    --------
    >>> label = mx.sym.Variable('softmax_label')
    >>> mlp = CaffeLoss(data=fc3, label=label, grad_scale=1, name='softmax',
    ...                 prototxt='layer{type:"SoftmaxWithLoss"}')
    """
    return _build(data, kwargs, prototxt, num_data, num_out, None, name, True, grad_scale, phase, attr)
