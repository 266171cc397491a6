"""CaffeNet: a whole net run by real libcaffe, the reference every comparison runs against."""

import os

import numpy as np

from ._ext import _caffe
from ._files import atomic_outputs
from ._text import read_prototxt
from .errors import CaffeIOError, CaffeShapeError

__all__ = ["CaffeNet"]


class CaffeNet:
    """A Caffe ``Net`` built by libcaffe from a prototxt, optionally with trained weights.

    Parameters
    ----------
    prototxt : str or os.PathLike
        Path to a ``.prototxt`` file or the text itself. V0/V1 nets are upgraded by libcaffe.
    caffemodel : str or os.PathLike, optional
        Trained weights (``.caffemodel``, V1 upgraded; ``.h5`` too), matched by layer name.
    phase : {'test', 'train'}
        Selects the include/exclude rules and the layers' phase.
    dtype : {'float32', 'float64'}

    Examples
    --------
    >>> net = CaffeNet("deploy.prototxt", "weights.caffemodel")
    >>> blobs = net.forward(data=image)            # every blob, by name
    >>> w, b = net.params["conv1"]                  # numpy views: writing sets the weights
    """

    def __init__(self, prototxt, caffemodel=None, phase="test", dtype="float32"):
        text, origin = read_prototxt(prototxt)
        self._net = _caffe.NetRunner(text, origin=origin, dtype=dtype, phase=phase)
        if caffemodel is not None:
            self.load_weights(caffemodel)

    # -------------------------------------------------------------- structure
    @property
    def name(self):
        return self._net.name

    @property
    def phase(self):
        return self._net.phase

    @property
    def dtype(self):
        return self._net.dtype

    @property
    def inputs(self):
        """Names of the net's input blobs (Input layers, ``input:`` fields)."""
        return self._net.input_names

    @property
    def outputs(self):
        """Names of the blobs no layer consumes."""
        return self._net.output_names

    @property
    def blob_names(self):
        return self._net.blob_names

    @property
    def layer_names(self):
        return self._net.layer_names

    def layer_type(self, layer):
        return self._net.layer_type(layer)

    @property
    def params(self):
        """``{layer_name: [weights, bias, ...]}`` as writable numpy views, for layers with blobs."""
        out = {}
        for layer in self._net.layer_names:
            n = self._net.num_params(layer)
            if n:
                out[layer] = [self._net.param(layer, i) for i in range(n)]
        return out

    def param_diffs(self):
        """``{layer_name: [d_weights, ...]}`` after :meth:`backward`, as copies."""
        out = {}
        for layer in self._net.layer_names:
            n = self._net.num_params(layer)
            if n:
                out[layer] = [self._net.param(layer, i, diff=True).copy() for i in range(n)]
        return out

    def blob(self, name):
        """A copy of blob `name`'s data as it stands."""
        return self._net.blob(name).copy()

    # -------------------------------------------------------------- running
    def forward(self, **inputs):
        """Set the given input blobs, reshape the net to them, run Forward.

        Returns
        -------
        dict
            Every blob by name (copies), in the net's blob order.
        """
        for name, value in inputs.items():
            if name not in self._net.blob_names:
                raise CaffeShapeError("net %r has no blob named %r (inputs: %s)"
                                      % (self.name, name, ", ".join(self.inputs) or "none"))
            value = np.asarray(value)
            if value.dtype.kind not in "fiu":
                raise CaffeShapeError("input %r has unsupported dtype %s" % (name, value.dtype))
            self._net.set_input(name, value)
        self._net.reshape()
        self._net.forward()
        return {name: self._net.blob(name).copy() for name in self._net.blob_names}

    def backward(self, **top_diffs):
        """Backward from the given output gradients (by blob name) after :meth:`forward`.

        Loss layers seed their own gradient (their loss weight); other outputs not given get a
        zero gradient. Returns every blob's diff by name (copies); parameter gradients are in
        :meth:`param_diffs`. Bottom gradients of the inputs are computed only when the prototxt
        says ``force_backward: true``.
        """
        self._net.clear_diffs()
        for name in self.outputs:
            if name not in top_diffs and self._net.blob_loss_weight(name) == 0:
                self._net.blob(name, diff=True)[...] = 0
        for name, value in top_diffs.items():
            target = self._net.blob(name, diff=True)
            value = np.asarray(value, dtype=self.dtype)
            if value.shape != target.shape:
                raise CaffeShapeError("gradient for %r has shape %r, blob has %r"
                                      % (name, value.shape, target.shape))
            target[...] = value
        self._net.backward()
        return {name: self._net.blob(name, diff=True).copy() for name in self._net.blob_names}

    # -------------------------------------------------------------- weights
    def load_weights(self, caffemodel):
        """Copy trained weights from a ``.caffemodel`` (or ``.h5``), matched by layer name."""
        path = os.fspath(caffemodel)
        if not os.path.isfile(path):
            raise CaffeIOError("caffemodel %r does not exist" % path)
        self._net.copy_trained(path)

    def save(self, caffemodel_path):
        """Write the weights as a binary ``.caffemodel`` (atomically: nothing half-written)."""
        with atomic_outputs([caffemodel_path], True, CaffeIOError) as (tmp,):
            self._net.save(tmp)

    def __repr__(self):
        return "<CaffeNet %r: %d layers, inputs %s, %s, %s>" % (
            self.name, len(self.layer_names), self.inputs, self.phase, self.dtype)
