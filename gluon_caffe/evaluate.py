"""evaluate(): top-1/top-5 of a converted model AND of real Caffe on a labelled Datum database, side by side."""

import collections

import mxnet as mx
import numpy as np

from .errors import CaffeShapeError

__all__ = ["evaluate", "EvaluateReport"]

EvaluateReport = collections.namedtuple("EvaluateReport", "images top1 top5 caffe_top1 caffe_top5 agreement")
EvaluateReport.__doc__ = """Accuracy of the converted model (``top1``, ``top5``) and of real Caffe (``caffe_top1``,
``caffe_top5``) over ``images`` records, and ``agreement``: the share of records where both predict the
same class."""


def _topk_hits(scores, labels, k):
    top = np.argsort(-scores, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def evaluate(prototxt, caffemodel, db, transform_param="", *, backend="lmdb", batch_size=50, limit=None,
             output=None, progress=None, **convert_options):
    """Classify every record of a labelled database with the converted model and with real Caffe.

    The seed's ``test_converter`` rebuilt: both nets see the same inputs (the records through
    :class:`gluon_caffe.data.CaffeTransform` in TEST phase), so any accuracy gap is the converter's.

    Parameters
    ----------
    prototxt, caffemodel : str
        The model (prototxt path or text; caffemodel path).
    db : str
        LMDB/LevelDB of Datum records with labels.
    transform_param : str or TransformationParameter
        Caffe's ``transform_param`` (scale, mean_file/mean_value, crop_size...) for the inputs.
    backend : {'lmdb', 'leveldb'}
    batch_size : int
    limit : int, optional
        Evaluate only the first `limit` records.
    output : str, optional
        The blob holding class scores; default the model's first output.
    progress : callable, optional
        Called as ``progress(done, total)`` after each batch.
    **convert_options
        Passed to :func:`gluon_caffe.convert` (``rgb`` is not allowed: Caffe reads BGR).

    Returns
    -------
    EvaluateReport
    """
    from .caffenet import CaffeNet
    from .converter.importer import import_model
    from .data import CaffeLMDBDataset, CaffeTransform

    if convert_options.get("rgb"):
        raise ValueError("evaluate compares with real Caffe on the same BGR inputs: rgb=True does not apply")
    dataset = CaffeLMDBDataset(db, backend=backend)
    transform = CaffeTransform(transform_param, phase="test")
    total = len(dataset) if limit is None else min(int(limit), len(dataset))
    caffe = CaffeNet(prototxt, caffemodel)
    if len(caffe.inputs) != 1:
        raise CaffeShapeError("evaluate needs a single-input model, this one has %s" % caffe.inputs)
    name = caffe.inputs[0]
    block = import_model(prototxt, caffemodel, **convert_options)
    block.hybridize(static_alloc=True)
    out_name = output or caffe.outputs[0]
    if out_name not in block.caffe_output_names:
        raise CaffeShapeError("the converted model has no output %r (outputs: %s)"
                              % (out_name, ", ".join(block.caffe_output_names)))
    out_index = block.caffe_output_names.index(out_name)
    hits = dict(top1=0, top5=0, caffe_top1=0, caffe_top5=0, agree=0)
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        samples = [dataset[i] for i in range(start, stop)]
        x = np.stack([transform(img) for img, _ in samples]).astype(np.float32)
        labels = np.array([int(label) for _, label in samples])
        ours = block(mx.nd.array(x))
        ours = (ours[out_index] if isinstance(ours, (list, tuple)) else ours).asnumpy().reshape(len(x), -1)
        ref = caffe.forward(**{name: x})[out_name].reshape(len(x), -1)
        hits["top1"] += _topk_hits(ours, labels, 1)
        hits["top5"] += _topk_hits(ours, labels, min(5, ours.shape[1]))
        hits["caffe_top1"] += _topk_hits(ref, labels, 1)
        hits["caffe_top5"] += _topk_hits(ref, labels, min(5, ref.shape[1]))
        hits["agree"] += int((ours.argmax(1) == ref.argmax(1)).sum())
        if progress is not None:
            progress(stop, total)
    n = max(total, 1)
    return EvaluateReport(total, hits["top1"] / n, hits["top5"] / n, hits["caffe_top1"] / n,
                          hits["caffe_top5"] / n, hits["agree"] / n)
