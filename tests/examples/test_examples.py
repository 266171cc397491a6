"""The examples/ scripts run end to end on a small Fashion-MNIST budget and clearly beat chance."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")
FASHION = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist, installed by the setup


def run_example(name, *args, timeout=120):
    assert os.path.isdir(FASHION), "Fashion-MNIST is missing: apt-get install dataset-fashion-mnist"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name)] + list(args), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, "%s exited %d:\n%s\n%s" % (name, proc.returncode, proc.stdout, proc.stderr[-3000:])
    return proc.stdout


def accuracies(out):
    return [float(a) for a in re.findall(r"test accuracy ([0-9.]+)", out)]


SMALL = ("--epochs", "1", "--limit", "2000", "--test-limit", "1000", "--quiet")


@pytest.mark.parametrize("name", ["mlp_caffe_layers.py", "mlp_caffe_loss.py"])
def test_mlp_examples(name):
    acc = accuracies(run_example(name, *SMALL))
    assert len(acc) == 1 and acc[0] > 0.6, acc


def test_lenet_example(tmp_path):
    out = run_example("lenet_caffe_conv.py", *SMALL, "--workdir", str(tmp_path))
    acc = accuracies(out)
    assert len(acc) == 2, out          # the Caffe-conv LeNet and the pure-Gluon one
    assert min(acc) > 0.6, out
    assert "difference (caffe-conv - pure-gluon)" in out
    assert os.path.isdir(tmp_path / "fashion_train_lmdb") and os.path.isdir(tmp_path / "fashion_test_lmdb")
