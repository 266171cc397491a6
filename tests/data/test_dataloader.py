"""gc.data.DataLoader (the fast path behind Gluon's DataLoader arguments) and gc.data.batchify (a one-copy batchify_fn)."""

import mxnet as mx
import numpy as np
import pytest

import gluon_caffe as gc
from gluon_caffe.data import CaffeLMDBDataset, CaffeTransform, batchify

from .conftest import caffe_records

ENC = "crop_size: 20 mean_value: 104 mean_value: 117 mean_value: 123 force_color: true"


def as_numpy(batches):
    return [(x.asnumpy(), y.asnumpy()) for x, y in batches]


def gluon(ds, batch_size, **kw):
    """The plain Gluon path with its default batchify, as numpy."""
    return as_numpy(mx.gluon.data.DataLoader(ds, batch_size=batch_size, **kw))


def assert_same(got, want):
    assert len(got) == len(want)
    for (x, y), (wx, wy) in zip(got, want):
        assert x.dtype == wx.dtype and x.shape == wx.shape and y.dtype == wy.dtype
        np.testing.assert_array_equal(x, wx)
        np.testing.assert_array_equal(y, wy)


def test_transform_first_samples_are_gluons(fashion_lmdb):
    path = fashion_lmdb[0]
    ds = CaffeLMDBDataset(path)
    t = CaffeTransform("scale: 0.00390625")
    lazy = ds.transform_first(t)
    assert len(lazy) == len(ds)
    img, label = lazy[3]
    np.testing.assert_array_equal(img, t(ds[3][0]))
    assert label == ds[3][1] and isinstance(img, np.ndarray)
    eager = ds.transform_first(t, lazy=False)
    np.testing.assert_array_equal(eager[3][0], img)


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_fast_path_equals_gluon(fashion_lmdb, workers):
    path, images, labels = fashion_lmdb
    ds = CaffeLMDBDataset(path)
    t = CaffeTransform("scale: 0.00390625")
    loader = gc.data.DataLoader(ds.transform_first(t), batch_size=32, num_workers=workers)
    assert loader.fast and len(loader) == 7
    want = gluon(ds.transform_first(t), 32)
    for _ in range(2):   # epochs
        assert_same(as_numpy(loader), want)
    raw = gc.data.DataLoader(ds, batch_size=64, last_batch="discard")
    assert raw.fast and len(raw) == 3
    assert_same(as_numpy(raw), gluon(ds, 64, last_batch="discard"))


def test_dataloader_encoded_equals_caffe(encoded_lmdb):
    """JPEG/PNG records through gc.data.DataLoader (threads) equal Caffe's Data layer."""
    path, _ = encoded_lmdb
    raw = CaffeLMDBDataset(path, decode=False)
    t = CaffeTransform(ENC, "test")
    got = as_numpy(gc.data.DataLoader(raw.transform_first(t), batch_size=8, num_workers=2))
    ref = caffe_records(path, len(raw), ENC)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), np.stack([r[0] for r in ref]))
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), [r[1] for r in ref])


def test_dataloader_falls_back_to_gluon_with_batchify(fashion_lmdb):
    path = fashion_lmdb[0]
    ds = CaffeLMDBDataset(path)
    t = CaffeTransform("scale: 0.00390625")
    want = gluon(ds.transform_first(t), 50)
    sampler = mx.gluon.data.BatchSampler(mx.gluon.data.SequentialSampler(len(ds)), 50, "keep")
    for loader in [gc.data.DataLoader(ds.transform_first(t), batch_sampler=sampler),
                   gc.data.DataLoader(ds.transform_first(lambda x: t(x)), batch_size=50),
                   gc.data.DataLoader(ds.transform_first(t), batch_size=50,
                                      sampler=mx.gluon.data.SequentialSampler(len(ds))),
                   gc.data.DataLoader(ds.transform_first(t), batch_size=50, batchify_fn=batchify)]:
        assert not loader.fast and isinstance(loader.loader, mx.gluon.data.DataLoader)
        assert_same(as_numpy(loader), want)
    with pytest.raises(ValueError, match="batch_size"):
        gc.data.DataLoader(ds)


@pytest.mark.parametrize("workers", [0, 2])
def test_batchify_in_gluon_dataloader_equals_default(fashion_lmdb, encoded_lmdb, workers):
    """Fork safety and exactness: worker processes hand their one-copy cpu_shared batches over."""
    path = fashion_lmdb[0]
    ds = CaffeLMDBDataset(path).transform_first(CaffeTransform("scale: 0.00390625"))
    want = gluon(ds, 32)
    loader = mx.gluon.data.DataLoader(ds, batch_size=32, num_workers=workers, batchify_fn=batchify)
    for _ in range(2):
        assert_same(as_numpy(loader), want)
    enc = CaffeLMDBDataset(encoded_lmdb[0], decode=False).transform_first(CaffeTransform(ENC, "test"))
    assert_same(as_numpy(mx.gluon.data.DataLoader(enc, batch_size=8, num_workers=workers,
                                                  batchify_fn=batchify)), gluon(enc, 8))


def test_batchify_types_and_errors():
    x = [np.full((2, 3), i, np.float32) for i in range(4)]
    out = batchify(x)
    assert isinstance(out, mx.nd.NDArray) and out.dtype == np.float32 and out.shape == (4, 2, 3)
    np.testing.assert_array_equal(out.asnumpy(), np.stack(x))
    data, label = batchify([(a, np.int32(i)) for i, a in enumerate(x)])
    assert label.dtype == np.int32 and label.asnumpy().tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(batchify([1, 2.5]).asnumpy(), [1.0, 2.5])   # mixed: promoted
    nd = batchify([mx.nd.ones((2,)), mx.nd.zeros((2,))])
    np.testing.assert_array_equal(nd.asnumpy(), [[1, 1], [0, 0]])
    big = [np.full((3, 300, 300), i, np.float32) for i in range(16)]   # above the copy threshold
    np.testing.assert_array_equal(batchify(big).asnumpy(), np.stack(big))
    assert batchify([np.zeros((0, 2), np.float32)] * 3).shape == (3, 0, 2)
    with pytest.raises(gc.CaffeShapeError, match="differ in shape"):
        batchify([np.zeros((3, 20, 20), np.float32), np.zeros((3, 21, 20), np.float32)])
    with pytest.raises(ValueError, match="no samples"):
        batchify([])


def test_batchify_reuses_worker_segments_safely(tmp_path, rng):
    """Large batches from worker processes come through reusable shared segments: equal to Gluon's
    default, intact while held (the worker writes elsewhere), released when dropped."""
    import gc as pygc
    from gluon_caffe.data import _shm, write_lmdb
    images = rng.integers(0, 256, (96, 3, 64, 64), dtype=np.uint8)
    write_lmdb(images, np.arange(96) % 7, str(tmp_path / "db"))
    ds = CaffeLMDBDataset(str(tmp_path / "db")).transform_first(CaffeTransform("scale: 0.5"))
    assert 32 * 3 * 64 * 64 * 4 >= _shm.MIN_BYTES
    want = gluon(ds, 32)
    loader = mx.gluon.data.DataLoader(ds, batch_size=32, num_workers=2, batchify_fn=batchify)
    held = []
    for _ in range(7):   # 21 batches held: more than the workers' segments (MXNet's path then)
        batches = list(loader)
        assert_same(as_numpy(batches), want)
        held.append(batches)
    for batches in held:   # written long ago, never overwritten since
        assert_same(as_numpy(batches), want)
    assert 0 < len(_shm._MAPS) <= 2 * _shm._MAX_SEGMENTS
    del held, batches
    pygc.collect()
    mx.nd.waitall()
    assert all(m[0] == 0 for m in _shm._MAPS.values())   # every segment is free for its worker again
    assert_same(as_numpy(loader), want)
