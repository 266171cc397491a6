"""verify: a converted model against real Caffe (CaffeNet), blob by blob, on the same input."""

import collections
import math
import re
import warnings

import mxnet as mx
import numpy as np

from .errors import CaffeShapeError

__all__ = ["verify", "VerifyReport", "VerifyRow"]

# Blobs whose reference is all zeros (a dead ReLU) are compared absolutely below this scale.
_SCALE_FLOOR = 1e-6

_MODES = ("imperative", "hybridized")

_SPLIT_NAME = re.compile(r"^(.+)_\d+_split_\d+$")

VerifyRow = collections.namedtuple("VerifyRow", ["blob", "shape", "max_abs_diff", "max_ref", "rel_diff", "ok"])
VerifyRow.__doc__ = """One compared blob.

Attributes
----------
blob : str
    Caffe blob name (for in-place blobs, their final value).
shape : tuple of int
    The blob's shape in Caffe.
max_abs_diff : float
    max |converted - caffe| over the blob, worst of the imperative and hybridized runs
    (``inf`` when the converted blob has a different number of elements).
max_ref : float
    max |caffe| over the blob.
rel_diff : float
    ``max_abs_diff / max(max_ref, 1e-6)``.
ok : bool
    ``rel_diff <= rtol`` (NaN is never ok).
"""


class VerifyReport(object):
    """What :func:`verify` found: one :class:`VerifyRow` per blob both nets have.

    Attributes
    ----------
    rows : list of VerifyRow
        In Caffe's blob order.
    rtol : float
        The tolerance the rows were judged against.
    inputs : dict of str to numpy.ndarray
        The inputs given to Caffe (and, converted as the options require, to MXNet).
    outputs : list of str
        The converted net's output blobs.
    """

    def __init__(self, rows, rtol, inputs, outputs):
        self.rows = list(rows)
        self.rtol = rtol
        self.inputs = inputs
        self.outputs = list(outputs)

    @property
    def ok(self):
        """True when at least one blob was compared and every row is within tolerance."""
        return bool(self.rows) and all(r.ok for r in self.rows)

    @property
    def worst(self):
        """The largest relative diff over all rows (NaN if any row is NaN; 0.0 with no rows)."""
        if not self.rows:
            return 0.0
        if any(math.isnan(r.rel_diff) for r in self.rows):
            return float("nan")
        return max(r.rel_diff for r in self.rows)

    @property
    def worst_blob(self):
        """Name of the blob with the largest relative diff, or None with no rows."""
        if not self.rows:
            return None
        return max(self.rows, key=lambda r: (math.isnan(r.rel_diff), r.rel_diff)).blob

    def table(self):
        """The rows as an aligned text table, one line per blob.

        Returns
        -------
        str
        """
        head = ("blob", "shape", "max|ref|", "max abs diff", "rel diff", "ok")
        lines = [head]
        for r in self.rows:
            lines.append((r.blob, "x".join(str(d) for d in r.shape) or "scalar", "%.4g" % r.max_ref,
                          "%.3g" % r.max_abs_diff, "%.3g" % r.rel_diff, "ok" if r.ok else "FAIL"))
        widths = [max(len(l[i]) for l in lines) for i in range(len(head))]
        out = []
        for k, l in enumerate(lines):
            cells = [l[0].ljust(widths[0]), l[1].ljust(widths[1])] + [
                c.rjust(w) for c, w in zip(l[2:], widths[2:])]
            out.append("  ".join(cells).rstrip())
            if k == 0:
                out.append("  ".join("-" * w for w in widths))
        return "\n".join(out)

    def summary(self):
        """One line: how many blobs, the worst relative diff and the verdict."""
        if not self.rows:
            return "no blob in common between the converted net and Caffe: FAIL"
        bad = sum(not r.ok for r in self.rows)
        return "%d blobs compared (imperative and hybridized), worst rel diff %.3g at %r, rtol %g: %s" % (
            len(self.rows), self.worst, self.worst_blob, self.rtol,
            "OK" if self.ok else "FAIL (%d over tolerance)" % bad)

    def __str__(self):
        return self.table() + "\n" + self.summary()

    def __repr__(self):
        return "<VerifyReport %d blobs, worst %.3g, %s>" % (len(self.rows), self.worst,
                                                           "ok" if self.ok else "FAIL")


def _reference_net(prototxt, caffemodel, reference, phase):
    from .caffenet import CaffeNet

    if reference is None:
        return CaffeNet(prototxt, caffemodel, phase=phase)
    if isinstance(reference, CaffeNet):
        return reference
    return CaffeNet(prototxt, reference, phase=phase)


def _output_key(sym):
    # One graph output is named uniquely by its node's output name ("conv1_output", "slice_output1").
    return sym.list_outputs()[0]


def _split_source(blob, blobs):
    """The converted blob that Caffe blob ``blob`` holds: itself, or the source of an automatic split.

    Caffe's insert_splits copies a blob read by several layers into
    ``<blob>_<layer>_<index>_split_<k>``; those copies equal their source blob.
    """
    if blob in blobs:
        return blob
    m = _SPLIT_NAME.match(blob)
    if m is None:
        return None
    # The layer name may contain "_" too: the longest known blob name that prefixes it wins.
    candidates = [b for b in blobs if m.group(1).startswith(b + "_")]
    return max(candidates, key=len) if candidates else None


def _run_converted(converted, feeds, syms, mode):
    """Run the group of ``syms`` as a SymbolBlock; returns numpy arrays in ``syms`` order."""
    names = list(converted.input_names)
    group = mx.sym.Group(syms) if len(syms) > 1 else syms[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        block = mx.gluon.SymbolBlock(group, [mx.sym.var(n) for n in names])
    values = dict(converted.arg_params)
    values.update(converted.aux_params)
    for name, param in block.collect_params().items():
        if name in values:
            param._load_init(values[name], mx.cpu())
    if mode == "hybridized":
        block.hybridize(static_alloc=True, static_shape=True)
    outs = block(*[mx.nd.array(feeds[n], dtype=np.float32) for n in names])
    if isinstance(outs, mx.nd.NDArray):
        outs = [outs]
    return [o.asnumpy() for o in outs]


def _compare(name, ref, got_by_mode, rtol):
    ref = np.asarray(ref, dtype=np.float64)
    max_ref = float(np.abs(ref).max()) if ref.size else 0.0
    abs_diff = 0.0
    for got in got_by_mode:
        if got.size != ref.size:
            abs_diff = float("inf")
            break
        if ref.size:
            d = float(np.abs(got.reshape(ref.shape).astype(np.float64) - ref).max())
            abs_diff = d if math.isnan(d) else max(abs_diff, d)
            if math.isnan(d):
                break
    rel = abs_diff / max(max_ref, _SCALE_FLOOR)
    return VerifyRow(name, tuple(ref.shape), abs_diff, max_ref, rel, bool(rel <= rtol))


def verify(prototxt, caffemodel=None, inputs=None, *, rtol=1e-4, seed=0, reference=None, **convert_options):
    """Convert a Caffe model and compare every blob with real Caffe on the same input.

    The model is converted (:func:`gluon_caffe.convert`), run as a Gluon
    ``SymbolBlock`` twice (not hybridized, then hybridized with static
    allocation) and compared with a :class:`gluon_caffe.CaffeNet` of the same
    prototxt and weights. Every Caffe blob that the converted graph also has is
    compared; in-place blobs are compared on their final value, and the copies
    Caffe inserts for blobs read by several layers (``*_split_N``) against their
    source blob.

    Parameters
    ----------
    prototxt : str or os.PathLike
        Path of the net definition, or its text.
    caffemodel : str or os.PathLike, optional
        Trained weights. Without them both sides use the prototxt's own
        (filler-free) parameters, which is only meaningful for weightless nets.
    inputs : dict of str to array-like, optional
        Values of the net's input blobs, as Caffe takes them (BGR, mean not
        subtracted when ``mean=`` is given). Inputs left out are filled with
        seeded standard-normal values of the prototxt's input shapes.
    rtol : float
        A blob is ok when ``max|converted - caffe| <= rtol * max|caffe|``.
    seed : int
        Seed of the random inputs.
    reference : CaffeNet or str or os.PathLike, optional
        Compare against this CaffeNet, or against Caffe loaded with this
        caffemodel instead of ``caffemodel`` (for checking that a difference
        is detected, or reusing a loaded net).
    **convert_options
        ``mean``, ``rgb``, ``fuse``, ``fallback``, ``input_shapes``, ``phase``
        as for :func:`gluon_caffe.convert`. With ``mean``, Caffe gets the
        input minus the mean and the converted net the raw input; with
        ``rgb=True`` the converted net gets the channels reversed and only
        the output blobs are compared (intermediate blobs are in RGB order);
        with ``fuse=True`` the blobs folded away (a convolution's output
        before its BatchNorm) are not compared.

    Returns
    -------
    VerifyReport

    Raises
    ------
    CaffeShapeError
        An input is not an input of the net, or its shape does not fit.
    ConversionError, CaffeProtoError, UnsupportedLayerError
        From the conversion; CaffeCheckError from Caffe.

    Examples
    --------
    >>> report = verify("deploy.prototxt", "weights.caffemodel")
    >>> print(report.table())
    >>> assert report.ok, report.summary()
    """
    from .converter.importer import convert

    convert_options.pop("details", None)
    phase = convert_options.get("phase", "test")
    if inputs is not None and convert_options.get("input_shapes") is None:
        convert_options["input_shapes"] = {k: tuple(np.shape(v)) for k, v in inputs.items()}
    converted = convert(prototxt, caffemodel, details=True, **convert_options)
    net = _reference_net(prototxt, caffemodel, reference, phase)

    rng = np.random.RandomState(seed)
    given = dict(inputs or {})
    unknown = sorted(set(given) - set(net.inputs))
    if unknown:
        raise CaffeShapeError("%s: not an input of the net (inputs: %s)"
                              % (", ".join(unknown), ", ".join(net.inputs) or "none"))
    caffe_in, mx_in = {}, {}
    for name in net.inputs:
        if name in given:
            x = np.asarray(given[name], dtype=np.float32)
        else:
            shape = converted.input_shapes.get(name) or net.blob(name).shape
            x = rng.standard_normal(tuple(shape)).astype(np.float32)
        caffe_in[name] = x
        if name in converted.input_names:
            mean = converted.arg_params.get(name + "_mean")
            if convert_options.get("rgb") and x.ndim == 4 and x.shape[1] == 3:
                mx_in[name] = np.ascontiguousarray(x[:, ::-1])
                if mean is not None:
                    caffe_in[name] = x - mean.asnumpy()[:, ::-1]
            else:
                mx_in[name] = x
                if mean is not None:
                    caffe_in[name] = x - mean.asnumpy()
    ref = net.forward(**caffe_in)

    if convert_options.get("rgb"):
        source = {b: b for b in ref if b in converted.output_names}
    else:
        source = {b: _split_source(b, converted.blobs) for b in ref}
        source = {b: s for b, s in source.items() if s is not None}
    names = list(source)
    # Blobs that are graph variables (inputs without a mean) are the fed values themselves.
    computed, keys = [], []
    for b in names:
        sym = converted.blobs[source[b]]
        if source[b] in converted.input_names and _output_key(sym) == source[b]:
            continue
        k = _output_key(sym)
        if k not in keys:
            keys.append(k)
            computed.append(sym)
    results = {mode: {} for mode in _MODES}
    if computed:
        for mode in _MODES:
            results[mode] = dict(zip(keys, _run_converted(converted, mx_in, computed, mode)))
    rows = []
    for b in names:
        sym = converted.blobs[source[b]]
        k = _output_key(sym)
        if source[b] in converted.input_names and k == source[b]:
            got = [mx_in[source[b]]]
        else:
            got = [results[mode][k] for mode in _MODES]
        rows.append(_compare(b, ref[b], got, rtol))
    return VerifyReport(rows, rtol, caffe_in, converted.output_names)

