"""Shared test helpers: seeded RNG, tolerance checks, one-layer nets for the reference runner."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def assert_close(got, want, rtol, what=""):
    """max |got - want| <= rtol * max(|want|, tiny): one relative bound over the whole array."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, "%s: shape %r != %r" % (what, got.shape, want.shape)
    scale = max(np.abs(want).max() if want.size else 0.0, 1e-30)
    err = np.abs(got - want).max() if want.size else 0.0
    assert err <= rtol * scale, "%s: max abs diff %.3g > %.3g (scale %.3g)" % (what, err, rtol * scale, scale)


def one_layer_net(body, bottom_shapes, num_tops=1, name="L", force_backward=True):
    """Prototxt of a net: Input layers for each bottom, then one layer `name` with `body`."""
    lines = ["name: \"one\""]
    if force_backward:
        lines.append("force_backward: true")
    for i, shape in enumerate(bottom_shapes):
        dims = " ".join("dim: %d" % d for d in shape)
        lines.append('layer { name: "in%d" type: "Input" top: "x%d" input_param { shape { %s } } }' % (i, i, dims))
    bottoms = " ".join('bottom: "x%d"' % i for i in range(len(bottom_shapes)))
    tops = " ".join('top: "y%d"' % i for i in range(num_tops))
    lines.append('layer { name: "%s" %s %s %s }' % (name, body, bottoms, tops))
    return "\n".join(lines)
