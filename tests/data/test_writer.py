"""write_lmdb and make-lmdb: records real Caffe reads, convert_imageset's output byte for byte, refusals."""

import os

import lmdb
import numpy as np
import pytest

import gluon_caffe as gc
from gluon_caffe.data import (CaffeLMDBDataset, make_lmdb, make_lmdb_main, parse_datum,
                              read_list_file, write_lmdb)

from .conftest import caffe_records, run_tool, smooth_images


def _records(path):
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        out = list(txn.cursor())
    env.close()
    return out


def test_write_lmdb_read_by_caffe_data_layer(fashion_lmdb):
    path, images, labels = fashion_lmdb
    got = caffe_records(path, 5)
    for i, (data, label) in enumerate(got):
        np.testing.assert_array_equal(data, images[i][None].astype(np.float32))
        assert label == labels[i]


def test_write_lmdb_float_and_varying_sizes(tmp_path, rng):
    floats = rng.standard_normal((4, 2, 5, 6)).astype(np.float32)
    path = str(tmp_path / "f")
    assert write_lmdb(floats, [7, 8, 9, 10], path) == 4
    for i, (data, label) in enumerate(caffe_records(path, 4)):
        np.testing.assert_array_equal(data, floats[i])
        assert label == 7 + i
    sized = [rng.integers(0, 256, (3, 4 + i, 5), dtype=np.uint8) for i in range(3)]
    path2 = str(tmp_path / "v")
    write_lmdb(sized, [0, 1, 2], path2)
    for i, (data, _) in enumerate(caffe_records(path2, 3)):
        np.testing.assert_array_equal(data, sized[i])


def test_write_lmdb_encoded_png_is_lossless(tmp_path, rng):
    imgs = smooth_images(rng, 3)
    path = str(tmp_path / "png")
    write_lmdb(imgs, [1, 2, 3], path, encoded="png")
    key, value = _records(path)[0]
    assert parse_datum(value).encoded
    for i, (data, label) in enumerate(caffe_records(path, 3)):
        np.testing.assert_array_equal(data, imgs[i])


def test_write_lmdb_refuses_to_overwrite(tmp_path, rng):
    x = rng.integers(0, 256, (2, 1, 3, 3), dtype=np.uint8)
    path = str(tmp_path / "db")
    write_lmdb(x, [0, 1], path)
    with pytest.raises(gc.CaffeIOError, match="already exists.*overwrite=True"):
        write_lmdb(x, [0, 1], path)
    write_lmdb(x[:1], [5], path, overwrite=True)
    assert len(CaffeLMDBDataset(path)) == 1
    plain = tmp_path / "notadb"
    plain.mkdir()
    (plain / "precious.txt").write_text("keep me")
    with pytest.raises(gc.CaffeIOError, match="not an LMDB or LevelDB directory"):
        write_lmdb(x, [0, 1], str(plain), overwrite=True)
    assert (plain / "precious.txt").read_text() == "keep me"


def test_write_lmdb_bad_input_leaves_nothing(tmp_path, rng):
    path = str(tmp_path / "db")
    with pytest.raises(gc.CaffeShapeError, match="2 arrays but 3 labels"):
        write_lmdb(rng.integers(0, 256, (2, 1, 3, 3), dtype=np.uint8), [0, 1, 2], path)
    with pytest.raises(gc.CaffeShapeError, match="record 1: .*uint8 values"):
        write_lmdb([np.zeros((3, 3), np.int64), np.full((3, 3), 300)], [0, 1], path)
    assert os.listdir(str(tmp_path)) == []
    with pytest.raises(gc.CaffeIOError, match="does not exist"):
        write_lmdb(np.zeros((1, 3, 3), np.uint8), [0], str(tmp_path / "no" / "db"))


@pytest.fixture
def image_list(tmp_path, rng):
    import cv2
    root = tmp_path / "imgs"
    (root / "sub dir").mkdir(parents=True)
    lines = []
    for i, img in enumerate(smooth_images(rng, 6, 20, 30)):
        name = "sub dir/im %d.%s" % (i, "png" if i % 2 else "jpg")
        cv2.imwrite(str(root / name), img.transpose(1, 2, 0))
        lines.append("%s %d" % (name, i % 3))
    list_file = tmp_path / "list.txt"
    list_file.write_text("\n".join(lines) + "\n\n")
    return str(root) + "/", str(list_file)


@pytest.mark.parametrize("flags", [[], ["--gray"], ["--resize_height=17", "--resize_width=23"],
                                   ["--encoded"], ["--encoded", "--encode_type=png", "--gray"]])
def test_make_lmdb_matches_convert_imageset(tmp_path, image_list, flags):
    """Same keys, same Datum bytes as Caffe's own tool (resize included: same OpenCV)."""
    root, list_file = image_list
    ref = str(tmp_path / "ref")
    run_tool("convert_imageset", *flags, root, list_file, ref)
    ours = str(tmp_path / "ours")
    argv = [root, list_file, ours, "-q"] + [f.replace("_", "-", 1) if f.startswith("--resize") or
                                             f.startswith("--encode_") else f for f in flags]
    assert make_lmdb_main(argv) == 0
    assert _records(ours) == _records(ref)


def test_make_lmdb_shuffle_reproducible(tmp_path, image_list):
    root, list_file = image_list
    make_lmdb(root, list_file, str(tmp_path / "a"), shuffle=True, seed=3, progress=False)
    make_lmdb(root, list_file, str(tmp_path / "b"), shuffle=True, seed=3, progress=False)
    a, b = _records(str(tmp_path / "a")), _records(str(tmp_path / "b"))
    assert a == b
    names = [k.split(b"_", 1)[1].decode() for k, _ in a]
    assert sorted(names) == sorted(name for name, _ in read_list_file(list_file))
    assert names != sorted(names)


def test_make_lmdb_missing_image_and_bad_list(tmp_path, image_list, capsys):
    root, list_file = image_list
    with open(list_file, "a") as f:
        f.write("sub dir/nope.jpg 1\n")
    with pytest.raises(gc.CaffeIOError, match=r"image '.*nope.jpg' is missing"):
        make_lmdb(root, list_file, str(tmp_path / "db"), progress=False)
    assert not os.path.exists(str(tmp_path / "db"))
    assert make_lmdb_main([root, list_file, str(tmp_path / "db"), "-q"]) == 1
    assert "nope.jpg" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("no_label_here\n")
    with pytest.raises(gc.CaffeIOError, match="line 1: expected 'path label'"):
        read_list_file(str(bad))
    with pytest.raises(gc.CaffeIOError, match="cannot read list file"):
        read_list_file(str(tmp_path / "absent.txt"))
    assert make_lmdb_main(["--no-such-flag"]) == 2


def test_make_lmdb_progress_bar(tmp_path, image_list, capsys):
    root, list_file = image_list
    assert make_lmdb_main([root, list_file, str(tmp_path / "db")]) == 0
    err = capsys.readouterr().err
    assert "make-lmdb" in err and "6/6" in err and "wrote 6 records" in err
