"""The gluon-caffe command line."""

import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "gluon_caffe", *args], capture_output=True, text=True, timeout=120)


def test_info_json():
    proc = run("info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert len(info["patch_id"]) == 12 and info["flags"]["CPU_ONLY"]


def test_info_table():
    proc = run("info")
    assert proc.returncode == 0, proc.stderr
    assert "patch id" in proc.stdout and "0002-recoverable-check-failures.patch" in proc.stdout


def test_no_command_prints_help_and_fails():
    proc = run()
    assert proc.returncode == 2
    assert "info" in proc.stdout


# ----------------------------------------------------------------- convert / verify / layers

import os  # noqa: E402

import numpy as np  # noqa: E402

SMALL = """name: "small"
layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 10 dim: 10 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "PReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool1" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


def _small_model(tmp_path, seed=0, name="small"):
    import gluon_caffe as gc

    proto = tmp_path / "small.prototxt"
    proto.write_text(SMALL)
    net = gc.CaffeNet(str(proto))
    rng = np.random.RandomState(seed)
    for params in net.params.values():
        for p in params:
            p[...] = rng.randn(*p.shape) / np.sqrt(max(int(np.prod(p.shape[1:])), 1))
    model = str(tmp_path / ("%s.caffemodel" % name))
    net.save(model)
    return str(proto), model


def _one_line_error(proc, command):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gluon-caffe %s: error: " % command), proc.stderr
    return lines[0]


def test_convert_writes_files_symbolblock_imports_and_matches_caffe(tmp_path):
    import mxnet as mx

    import gluon_caffe as gc

    proto, model = _small_model(tmp_path)
    prefix = str(tmp_path / "out" / "small")
    os.makedirs(os.path.dirname(prefix))
    proc = run("convert", proto, model, "-o", prefix, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "%s-symbol.json" % prefix in proc.stdout and "%s-0000.params" % prefix in proc.stdout
    assert "inputs: data (2x3x10x10)" in proc.stdout and "outputs: prob" in proc.stdout
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MXNet's "cannot decide type for data" on imports
        block = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
    x = np.random.RandomState(1).randn(2, 3, 10, 10).astype(np.float32)
    ref = gc.CaffeNet(proto, model).forward(data=x)["prob"]
    for hybridize in (False, True):
        if hybridize:
            block.hybridize()
        out = block(mx.nd.array(x)).asnumpy()
        assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_convert_refuses_to_overwrite(tmp_path):
    proto, model = _small_model(tmp_path)
    prefix = str(tmp_path / "small")
    with open(prefix + "-symbol.json", "w") as f:
        f.write("keep me")
    proc = run("convert", proto, model, "-o", prefix)
    line = _one_line_error(proc, "convert")
    assert "already exists" in line and "--overwrite" in line
    with open(prefix + "-symbol.json") as f:
        assert f.read() == "keep me"
    assert not os.path.exists(prefix + "-0000.params")
    assert sorted(os.listdir(tmp_path)) == ["small-symbol.json", "small.caffemodel", "small.prototxt"]
    proc = run("convert", proto, model, "-o", prefix, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    with open(prefix + "-symbol.json") as f:
        assert "Convolution" in f.read()


def test_convert_bad_prototxt_names_layer_and_field(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text(SMALL.replace("num_output: 4", "num_outptu: 4"))
    proc = run("convert", str(bad), "-o", str(tmp_path / "bad"))
    line = _one_line_error(proc, "convert")
    assert "conv1" in line and "num_outptu" in line
    assert sorted(os.listdir(tmp_path)) == ["bad.prototxt"]


def test_verify_ok_on_mtcnn_onet_with_given_input(tmp_path):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import fixtures

    archive = fixtures.fetch("big-fiubrother-detection")
    proto = fixtures.extract(archive, "model/onet.prototxt")
    model = fixtures.extract(archive, "model/onet.caffemodel")
    x = str(tmp_path / "x.npy")
    np.save(x, np.random.RandomState(0).uniform(-1, 1, (4, 3, 48, 48)).astype(np.float32))
    proc = run("verify", proto, model, "--input", "data=" + x)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["blob", "shape", "max|ref|", "max", "abs", "diff", "rel", "diff", "ok"]
    rows = {l.split()[0]: l.split() for l in lines[2:-1]}
    assert rows["prob1"][1] == "4x2" and rows["conv1"][-1] == "ok"
    assert {"data", "conv1", "conv5", "conv6-1", "conv6-2", "conv6-3", "prob1"} <= set(rows)
    assert lines[-1].endswith(": OK")


def test_verify_exits_1_above_tolerance(tmp_path):
    proto, model = _small_model(tmp_path)
    _, other = _small_model(tmp_path, seed=1, name="other")
    proc = run("verify", proto, model)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run("verify", proto, model, "--reference-weights", other)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout.splitlines()[-1]
    assert any(l.split()[0] == "prob" and l.split()[-1] == "FAIL" for l in proc.stdout.splitlines()[2:-1])


def test_verify_bad_arguments_exit_2(tmp_path):
    proto, model = _small_model(tmp_path)
    line = _one_line_error(run("verify", proto, model, "--input", "data"), "verify")
    assert "NAME=file.npy" in line
    line = _one_line_error(run("verify", proto, model, "--input", "data=" + str(tmp_path / "no.npy")), "verify")
    assert "no.npy" in line
    np.save(str(tmp_path / "x.npy"), np.zeros((1, 3, 10, 10), np.float32))
    line = _one_line_error(run("verify", proto, model, "--input", "image=" + str(tmp_path / "x.npy")), "verify")
    assert "image" in line and "not an input" in line


def test_layers_lists_convolution_as_native():
    proc = run("layers")
    assert proc.returncode == 0, proc.stderr
    rows = {l.split()[0]: l.split()[1:] for l in proc.stdout.splitlines()[2:] if len(l.split()) == 3}
    assert rows["Convolution"] == ["native", "yes"]
    assert rows["SoftmaxWithLoss"][0] == "dropped" and rows["Data"][0] == "input"
    assert rows["LSTM"] == ["fallback", "yes"]
    data = json.loads(run("layers", "--json").stdout)
    assert {"type": "Convolution", "converter": "native", "libcaffe": True} in data


def test_convert_progress_bar_and_quiet(tmp_path, monkeypatch, capsys):
    from gluon_caffe import cli

    proto, model = _small_model(tmp_path)
    monkeypatch.setattr(cli, "_PROGRESS_MIN_BYTES", 0)
    assert cli.main(["convert", proto, model, "-o", str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert "reading small.caffemodel" in err and "wrote" in out
    assert cli.main(["convert", proto, model, "-o", str(tmp_path / "b"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "wrote" in out


def test_convert_reports_read_progress(tmp_path):
    import os

    import gluon_caffe as gc

    proto, model = _small_model(tmp_path)
    calls = []
    gc.convert(proto, model, progress=lambda done, total: calls.append((done, total)))
    size = os.path.getsize(model)
    assert calls and calls[-1] == (size, size)
    assert all(a <= b for (a, _), (b, _) in zip(calls, calls[1:]))


def test_make_lmdb_through_the_main_command(tmp_path):
    import cv2
    import numpy as np

    import gluon_caffe as gc

    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        cv2.imwrite(str(tmp_path / ("%d.png" % i)), rng.integers(0, 255, (5, 4, 3), dtype=np.uint8))
        lines.append("%d.png %d" % (i, i))
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    db = tmp_path / "db"
    proc = run("make-lmdb", str(tmp_path), str(tmp_path / "list.txt"), str(db), "-q")
    assert proc.returncode == 0, proc.stderr
    ds = gc.data.CaffeLMDBDataset(str(db))
    assert len(ds) == 3 and [int(ds[i][1]) for i in range(3)] == [0, 1, 2]
    again = run("make-lmdb", str(tmp_path), str(tmp_path / "list.txt"), str(db), "-q")
    assert again.returncode != 0 and "overwrite" in again.stderr


def test_evaluate_reports_both_nets_side_by_side(tmp_path):
    import numpy as np

    import gluon_caffe as gc

    proto = tmp_path / "cls.prototxt"
    proto.write_text('''name: "cls"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 6 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
''')
    net = gc.CaffeNet(str(proto))
    model = str(tmp_path / "cls.caffemodel")
    net.save(model)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (40, 1, 4, 4), dtype=np.uint8)
    w, b = net.params["fc"]
    scores = (images.reshape(40, -1) / 255.0) @ w.T + b
    labels = scores.argmax(1)
    labels[:10] = (labels[:10] + 1) % 6          # 10 of 40 wrong: top-1 must be exactly 0.75
    gc.data.write_lmdb(images, labels, str(tmp_path / "db"))
    proc = run("evaluate", str(proto), model, str(tmp_path / "db"), "--transform-param", "scale: 0.00392156862745098",
               "--batch-size", "16", "-q")
    assert proc.returncode == 0, proc.stderr
    lines = {l.split()[0] + (" " + l.split()[1] if l.startswith("real") else ""): l.split() for l in
             proc.stdout.splitlines() if l.strip()}
    assert float(lines["gluon_caffe"][1]) == 0.75 and float(lines["real Caffe"][2]) == 0.75
    assert "40 images" in proc.stdout and "100.00%" in proc.stdout
    bad = run("evaluate", str(proto), model, str(tmp_path / "db"), "--rgb")
    assert bad.returncode == 2 and "transform-param" in bad.stderr


def test_help_lists_every_command():
    proc = run("--help")
    assert proc.returncode == 0
    for command in ("convert", "verify", "evaluate", "layers", "zoo", "make-lmdb", "info", "bench", "export-onnx"):
        assert command in proc.stdout, command
