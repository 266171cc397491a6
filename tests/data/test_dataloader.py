"""gc.data.DataLoader (the fast path behind Gluon's DataLoader arguments) and gc.data.batchify (a one-copy batchify_fn)."""

import mxnet as mx
import numpy as np
import pytest

import gluon_caffe as gc
from gluon_caffe.data import CaffeLMDBDataset, CaffeTransform, batchify

from .conftest import assert_same, caffe_records

ENC = "crop_size: 20 mean_value: 104 mean_value: 117 mean_value: 123 force_color: true"


def as_numpy(batches):
    return [(x.asnumpy(), y.asnumpy()) for x, y in batches]


def gluon(ds, batch_size, **kw):
    """The plain Gluon path with its default batchify, as numpy."""
    return as_numpy(mx.gluon.data.DataLoader(ds, batch_size=batch_size, **kw))


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


def test_worker_samples_are_laid_out_in_the_batch_segment(tmp_path, rng):
    """In a worker process, once a batch has gone through batchify, the transform writes each
    sample straight into the next slot of a shared segment and the batch goes without a copy:
    equal to Gluon's default, intact while held, every segment free again once dropped."""
    import gc as pygc
    from gluon_caffe.data import _shm, write_lmdb
    images = rng.integers(0, 256, (64, 3, 100, 100), dtype=np.uint8)
    write_lmdb(images, np.arange(64) % 5, str(tmp_path / "db"), encoded="png")
    spec = "crop_size: 96 mirror: true mean_value: 110"
    ds = CaffeLMDBDataset(str(tmp_path / "db")).transform_first(CaffeTransform(spec, "test", seed=1))
    assert 3 * 96 * 96 * 4 >= _shm.MIN_SAMPLE_BYTES and 10 * 3 * 96 * 96 * 4 >= _shm.MIN_BYTES
    first = gluon(ds, 10, num_workers=1)
    loader = mx.gluon.data.DataLoader(ds, batch_size=10, num_workers=1, batchify_fn=batchify)
    held = [list(loader) for _ in range(3)]   # the last batch (4 samples) is smaller than the arena
    for epoch in held:
        got = as_numpy(epoch)
        assert [x.shape[0] for x, _ in got] == [10] * 6 + [4]
        for (x, y), (wx, wy) in zip(got, first):   # mirrors are random: compare what is fixed
            np.testing.assert_array_equal(y, wy)
            same = (x == wx).reshape(len(x), -1).all(axis=1) | \
                (x == wx[..., ::-1]).reshape(len(x), -1).all(axis=1)
            assert same.all()
    kept = [as_numpy(epoch) for epoch in held]
    for epoch, before in zip(held, kept):   # still what they were after later batches were written
        assert_same(as_numpy(epoch), before)
    del held, epoch
    pygc.collect()
    mx.nd.waitall()
    assert all(m[0] == 0 for m in _shm._MAPS.values())


def test_sample_arena_in_one_process(rng):
    """The arena as a worker sees it: the second batch of samples is sent as it lies (no copy),
    its samples become read-only, and a slot is not written again while a sample over it lives."""
    import gc as pygc
    from mxnet.gluon.data import dataloader
    from gluon_caffe.data import _shm
    t = CaffeTransform("crop_size: 100 mirror: true", "train", seed=1)
    imgs = [rng.integers(0, 256, (3, 110, 110), dtype=np.uint8) for _ in range(16)]
    saved = dataloader._worker_dataset
    dataloader._worker_dataset = object()   # as in a worker process
    try:
        first = batchify([t(x) for x in imgs])
        assert isinstance(first, _shm.RingBatch) and _shm._ring().capacity == 16
        samples = [t(x) for x in imgs]
        want = np.stack(samples)
        second = batchify(samples)
        assert isinstance(second, _shm.RingBatch) and second.segment is not first.segment
        assert second.view().tobytes() == want.tobytes()
        assert not samples[0].flags.writeable
        keep = samples[3][1:]                 # a view of one sample outlives the batch
        first.segment.map[0] = second.segment.map[0] = 0   # as when the parent drops both
        del samples
        pygc.collect()
        third = batchify([t(x) for x in imgs])
        assert third.segment is not second.segment   # still held by `keep` in this process
        assert keep.tobytes() == want[3][1:].tobytes()
        third.segment.map[0] = 0
        del keep
        pygc.collect()
        assert second.segment.live == 0
    finally:
        dataloader._worker_dataset = saved
        ring = _shm._ring()
        ring.detach_arena()
        ring.capacity = 0
        for seg in ring.segments:
            seg.map[0] = 0
