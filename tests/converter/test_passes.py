"""Graph rewrites: a Scale after a BatchNorm becomes that BatchNorm's gamma/beta, and stays exact."""

import json

import mxnet as mx
import numpy as np
import pytest

import gluon_caffe as gc
from tests.conftest import assert_close

NET = '''name: "bnscale"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 6 dim: 5 } } }
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "%(bn_top)s" batch_norm_param { eps: 0.001 } }
layer { name: "sc" type: "Scale" bottom: "%(bn_top)s" top: "%(sc_top)s"
        scale_param { bias_term: %(bias)s filler { type: "uniform" min: 0.5 max: 2 }
                      bias_filler { type: "uniform" min: -1 max: 1 } } }
layer { name: "relu" type: "ReLU" bottom: "%(sc_top)s" top: "out" }
'''


@pytest.mark.parametrize("in_place", [True, False])
@pytest.mark.parametrize("bias", ["true", "false"])
def test_scale_merged_into_batch_norm_matches_caffe(tmp_path, in_place, bias, rng):
    text = NET % {"bn_top": "x" if in_place else "bn", "sc_top": "x" if in_place else "sc", "bias": bias}
    net = gc.CaffeNet(text)
    stats = net.params["bn"]
    stats[0][...] = rng.standard_normal(3)
    stats[1][...] = rng.uniform(0.5, 2, 3)
    stats[2][...] = 0.9
    model = str(tmp_path / "m.caffemodel")
    net.save(model)
    sym, args, aux = gc.convert(text, model)
    ops = [n["op"] for n in json.loads(sym.tojson())["nodes"] if n["op"] != "null"]
    assert ops == ["BatchNorm", "Activation"], ops  # no broadcast ops left: the Scale is merged
    x = rng.standard_normal((2, 3, 6, 5)).astype("f4") * 3
    block = gc.import_model(text, model)
    want = gc.CaffeNet(text, model).forward(data=x)["out"]
    for hybrid in (False, True):
        if hybrid:
            block.hybridize()
        assert_close(block(mx.nd.array(x)).asnumpy(), want, 1e-6, "bn+scale hybrid=%s" % hybrid)
    report = gc.verify(text, model, {"data": x}, rtol=1e-6)
    assert report.ok, report.table()


def test_scale_with_other_readers_is_not_merged(tmp_path, rng):
    text = NET % {"bn_top": "bn", "sc_top": "sc", "bias": "true"} + \
        'layer { name: "tap" type: "ReLU" bottom: "bn" top: "tap" }\n'
    model = str(tmp_path / "m.caffemodel")
    gc.CaffeNet(text).save(model)
    sym, _, _ = gc.convert(text, model)
    ops = [n["op"] for n in json.loads(sym.tojson())["nodes"] if n["op"] != "null"]
    assert "broadcast_mul" in ops  # 'bn' is read by another layer: it must stay a real blob
    x = rng.standard_normal((2, 3, 6, 5)).astype("f4")
    ref = gc.CaffeNet(text, model).forward(data=x)
    outs = gc.import_model(text, model)(mx.nd.array(x))
    got = {name: o.asnumpy() for name, o in zip(["out", "tap"], outs)}
    for name in ("out", "tap"):
        assert_close(got[name], ref[name], 1e-6, name)
