"""All-or-nothing output files (gluon_caffe._files)."""

import os

import pytest

from gluon_caffe._files import atomic_outputs
from gluon_caffe.errors import ConversionError


def test_outputs_appear_only_on_success(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    with pytest.raises(RuntimeError):
        with atomic_outputs([a, b], False, ConversionError) as (ta, tb):
            open(ta, "w").write("A")
            raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []
    with atomic_outputs([a, b], False, ConversionError) as (ta, tb):
        open(ta, "w").write("A")
        open(tb, "w").write("B")
    assert a.read_text() == "A" and b.read_text() == "B"
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_existing_output_kept_unless_overwrite(tmp_path):
    a = tmp_path / "a"
    a.write_text("mine")
    with pytest.raises(ConversionError, match="already exists"):
        with atomic_outputs([a], False, ConversionError) as (ta,):
            open(ta, "w").write("new")
    assert a.read_text() == "mine"
    with atomic_outputs([a], True, ConversionError) as (ta,):
        open(ta, "w").write("new")
    assert a.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["a"]


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(ConversionError, match="does not exist"):
        with atomic_outputs([tmp_path / "nope" / "x"], True, ConversionError):
            pass


def test_outputs_get_the_modes_a_plain_write_would(tmp_path):
    """New outputs are 0666 less the umask (not mkstemp's 0600); a replaced file keeps its mode."""
    mask = os.umask(0o027)
    try:
        a, b = tmp_path / "a", tmp_path / "b"
        b.write_text("old")
        os.chmod(b, 0o604)
        with atomic_outputs([a, b], True, ConversionError) as (ta, tb):
            assert os.path.basename(ta).startswith(".a.") and ta.endswith(".tmp")
            open(ta, "w").write("A")
            open(tb, "w").write("B")
    finally:
        os.umask(mask)
    assert oct(os.stat(a).st_mode & 0o777) == oct(0o640)
    assert oct(os.stat(b).st_mode & 0o777) == oct(0o604)
    assert b.read_text() == "B"
