"""Layers with no native mapping run as CaffeLayers inside the converted graph, and stay exact."""

import numpy as np
import mxnet as mx
import pytest

import gluon_caffe as gc
from gluon_caffe.converter import importer
from tests.conftest import assert_close

NET = '''name: "fb"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 }
                            bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "spp" type: "SPP" bottom: "conv" top: "spp" spp_param { pyramid_height: 2 pool: MAX } }
layer { name: "fc" type: "InnerProduct" bottom: "spp" top: "fc"
        inner_product_param { num_output: 5 weight_filler { type: "xavier" } bias_filler { type: "gaussian" std: 1 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
'''


@pytest.fixture
def model(tmp_path):
    path = str(tmp_path / "fb.caffemodel")
    gc.CaffeNet(NET).save(path)
    return path


@pytest.fixture
def force_inner_product_fallback(monkeypatch):
    real = importer.get_translator
    monkeypatch.setattr(importer, "get_translator", lambda t: None if t == "InnerProduct" else real(t))


@pytest.mark.parametrize("hybridize", [False, True])
def test_unmapped_and_forced_layers_match_caffe(model, force_inner_product_fallback, hybridize, rng):
    sym, args, aux = gc.convert(NET, model)
    ops = {n["op"] for n in __import__("json").loads(sym.tojson())["nodes"]}
    assert "Custom" in ops  # SPP (no translator) and InnerProduct (forced) run in Caffe
    assert "fc_weight" in args and args["fc_weight"].shape == (5, 4 * (1 + 4))
    block = gc.import_model(NET, model)
    if hybridize:
        block.hybridize()
    x = rng.standard_normal((2, 3, 12, 12)).astype("f4")
    ref = gc.CaffeNet(NET, model).forward(data=x)
    got = block(mx.nd.array(x)).asnumpy()
    assert_close(got, ref["prob"], 1e-5, "prob through fallback layers")


def test_fallback_off_lists_the_layer(model):
    with pytest.raises(gc.UnsupportedLayerError, match="spp"):
        gc.convert(NET, model, fallback=False)


def test_exported_fallback_net_loads_after_import(model, tmp_path, rng):
    prefix = str(tmp_path / "out")
    gc.convert(NET, model, out_prefix=prefix)
    x = rng.standard_normal((2, 3, 12, 12)).astype("f4")
    block = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
    ref = gc.CaffeNet(NET, model).forward(data=x)["prob"]
    assert_close(block(mx.nd.array(x)).asnumpy(), ref, 1e-5, "imported fallback net")
