"""CaffeLMDBDataset: records as Caffe reads them, fork-safe DataLoader, sharding, LevelDB, bad input."""

import lmdb
import mxnet as mx
import numpy as np
import pytest

import gluon_caffe as gc
from gluon_caffe.data import CaffeLMDBDataset, CaffeTransform, write_lmdb
from gluon_caffe.proto import caffe_pb2

from .conftest import caffe_records, run_tool, tree_state


def test_raw_records(fashion_lmdb):
    path, images, labels = fashion_lmdb
    ds = CaffeLMDBDataset(path)
    assert len(ds) == 200
    img, label = ds[7]
    assert img.dtype == np.uint8 and img.shape == (1, 28, 28)
    np.testing.assert_array_equal(img[0], images[7])
    assert label == labels[7] and label.dtype == np.int32
    np.testing.assert_array_equal(ds[-1][0][0], images[-1])
    assert ds.key(3) == b"00000003"
    with pytest.raises(IndexError):
        ds[200]


def test_encoded_records_decode_as_caffe(encoded_lmdb):
    path, images = encoded_lmdb
    ds = CaffeLMDBDataset(path)
    ref = caffe_records(path, len(ds))
    for i in range(len(ds)):
        img, label = ds[i]
        assert img.dtype == np.uint8 and img.shape == ref[i][0].shape
        np.testing.assert_array_equal(img.astype(np.float32), ref[i][0], err_msg="record %d" % i)
        assert label == ref[i][1] == i
    assert ds[-1][0].shape[0] == 1  # grayscale JPEG stays one channel, as in Caffe
    raw, _ = CaffeLMDBDataset(path, decode=False)[0]
    assert raw.ndim == 1 and raw[:2].tolist() == [0xFF, 0xD8]


def test_float_records(tmp_path, rng):
    x = rng.standard_normal((3, 2, 4, 5)).astype(np.float32)
    write_lmdb(x, [0, 1, 2], str(tmp_path / "f"))
    img, _ = CaffeLMDBDataset(str(tmp_path / "f"))[2]
    assert img.dtype == np.float32
    np.testing.assert_array_equal(img, x[2])


def test_dataloader_workers_fork(fashion_lmdb):
    path, images, labels = fashion_lmdb
    ds = CaffeLMDBDataset(path)
    ds[0]  # an environment open in the parent must not break the forked workers
    t = CaffeTransform("scale: 0.00390625")
    loader = mx.gluon.data.DataLoader(ds.transform_first(t), batch_size=32, num_workers=2)
    seen_x, seen_y = [], []
    for _ in range(2):
        xs, ys = [], []
        for x, y in loader:
            xs.append(x.asnumpy())
            ys.append(y.asnumpy())
        seen_x.append(np.concatenate(xs))
        seen_y.append(np.concatenate(ys))
    want = images[:, None].astype(np.float32) * np.float32(0.00390625)
    for x, y in zip(seen_x, seen_y):
        np.testing.assert_array_equal(x, want)
        np.testing.assert_array_equal(y, labels)
    assert ds[1][1] == labels[1]  # the parent still reads


@pytest.mark.parametrize("num_parts", [1, 3, 4])
def test_sharding_disjoint_and_covering(fashion_lmdb, num_parts):
    path, images, labels = fashion_lmdb
    parts = [CaffeLMDBDataset(path, num_parts=num_parts, part_index=i) for i in range(num_parts)]
    keys = [ds.key(j) for ds in parts for j in range(len(ds))]
    assert len(keys) == len(set(keys)) == 200
    assert sorted(keys) == [CaffeLMDBDataset(path).key(i) for i in range(200)]
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
    # Caffe's multi-solver rule: rank r reads records r, r + size, ...
    np.testing.assert_array_equal(parts[-1][1][0][0], images[num_parts - 1 + num_parts])
    with pytest.raises(ValueError):
        CaffeLMDBDataset(path, num_parts=2, part_index=2)


def _count(batch):
    return len(batch)


def test_readers_never_write(fashion_lmdb, encoded_lmdb):
    for path in (fashion_lmdb[0], encoded_lmdb[0]):
        before = tree_state(path)
        ds = CaffeLMDBDataset(path)
        for i in range(len(ds)):
            ds[i]
        list(mx.gluon.data.DataLoader(ds, batch_size=8, num_workers=2, batchify_fn=_count))
        ds.close()
        assert tree_state(path) == before


@pytest.fixture(scope="module")
def leveldbs(tmp_path_factory, fashion_lmdb):
    """The same 40 records as a LevelDB written by us and one written by Caffe's convert_imageset."""
    _, images, labels = fashion_lmdb
    root = tmp_path_factory.mktemp("leveldb")
    ours = str(root / "ours")
    write_lmdb(images[:40], labels[:40], ours, backend="leveldb")
    import cv2
    (root / "imgs").mkdir()
    with open(root / "list.txt", "w") as f:
        for i in range(40):
            cv2.imwrite(str(root / "imgs" / ("%d.png" % i)), images[i])
            f.write("%d.png %d\n" % (i, labels[i]))
    theirs = str(root / "theirs")
    run_tool("convert_imageset", "--gray", "--backend=leveldb", str(root / "imgs") + "/",
             str(root / "list.txt"), theirs)
    return ours, theirs


def test_leveldb(leveldbs, fashion_lmdb):
    _, images, labels = fashion_lmdb
    for path in leveldbs:
        before = tree_state(path)
        ds = CaffeLMDBDataset(path, backend="leveldb")
        assert len(ds) == 40
        np.testing.assert_array_equal(ds[5][0][0], images[5])
        assert ds[5][1] == labels[5]
        loader = mx.gluon.data.DataLoader(ds, batch_size=10, num_workers=2)
        got = np.concatenate([x.asnumpy() for x, _ in loader])
        np.testing.assert_array_equal(got[:, 0], images[:40])
        ds.close()
        assert tree_state(path) == before  # LevelDB would compact and relock on open: not here


def test_missing_path_and_wrong_backend(tmp_path, fashion_lmdb, leveldbs):
    with pytest.raises(gc.CaffeIOError, match="LMDB database '.*nope' does not exist"):
        CaffeLMDBDataset(str(tmp_path / "nope"))
    with pytest.raises(gc.CaffeIOError, match="not a LevelDB.*pass backend='lmdb'"):
        CaffeLMDBDataset(fashion_lmdb[0], backend="leveldb")
    with pytest.raises(gc.CaffeIOError, match="not an LMDB.*pass backend='leveldb'"):
        CaffeLMDBDataset(leveldbs[0], backend="lmdb")
    with pytest.raises(ValueError, match="backend must be"):
        CaffeLMDBDataset(fashion_lmdb[0], backend="hdf5")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(gc.CaffeIOError, match="not an LMDB database: no data.mdb"):
        CaffeLMDBDataset(str(empty))


def test_corrupt_and_truncated_records_name_their_key(tmp_path, rng):
    x = rng.integers(0, 256, (3, 3, 8, 8), dtype=np.uint8)
    path = str(tmp_path / "db")
    write_lmdb(x, [0, 1, 2], path)
    env = lmdb.open(path, lib_version=0)
    with env.begin(write=True) as txn:
        good = txn.get(b"00000001")
        txn.put(b"00000001", good[: len(good) // 2])          # truncated mid-pixels
        txn.put(b"00000002", b"\xff\xff\xff garbage")           # not a protobuf
        jpeg_head = caffe_pb2.Datum(data=b"\xff\xd8\xff\xe0 truncated", encoded=True)
        txn.put(b"00000003", jpeg_head.SerializeToString())     # undecodable image
    env.close()
    ds = CaffeLMDBDataset(path)
    np.testing.assert_array_equal(ds[0][0], x[0])
    with pytest.raises(gc.CaffeIOError, match="record '00000001'.*(truncated|corrupt)"):
        ds[1]
    with pytest.raises(gc.CaffeIOError, match="record '00000002'.*not a valid Datum"):
        ds[2]
    with pytest.raises(gc.CaffeIOError, match="record '00000003'.*could not decode"):
        ds[3]


def test_pickle_without_open_env(fashion_lmdb):
    import pickle
    ds = CaffeLMDBDataset(fashion_lmdb[0])
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[3][0], ds[3][0])
