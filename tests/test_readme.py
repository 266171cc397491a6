"""The README's supported-layer table is generated from the registry and libcaffe, never hand-edited."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_layer_table_is_current():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "update_readme.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_support_table_kinds():
    from gluon_caffe.converter.support import support_table

    rows = {t: kind for t, kind, _ in support_table(["Convolution", "SPP", "Data", "Accuracy", "Foo"])}
    assert rows["Convolution"] == "native"
    assert rows["SPP"] == "fallback"       # libcaffe has it, no translator: runs as a CaffeLayer
    assert rows["Data"] == "input"
    assert rows["Accuracy"] == "dropped"
    assert rows["Foo"] == "fallback"
    assert "Python" not in rows
    unknown = {t: (kind, c) for t, kind, c in support_table(None)}
    assert unknown["Convolution"] == ("native", None)
