"""Sequential raw batches read several at a time (CaffeBatchLoader._reads), the cache touch ahead of
an LMDB cursor run, and the cast-first arithmetic: all give exactly what the batch-by-batch path gives."""

import multiprocessing

import mxnet as mx
import numpy as np
import pytest

import gluon_caffe as gc
from gluon_caffe.data import CaffeLMDBDataset, CaffeTransform, _db, array_to_datum, loader, write_lmdb

from .conftest import assert_same


def one_by_one(ld, epochs=1):
    """What the loader yields, built batch by batch with :meth:`CaffeBatchLoader.build` (as numpy)."""
    out = []
    for _ in range(epochs):
        for indices in ld._epoch():
            x, y = ld.build(indices)
            out.append((np.asarray(x.asnumpy() if hasattr(x, "asnumpy") else x), np.asarray(y)))
    return out


def as_numpy(batches):
    return [(x.asnumpy() if hasattr(x, "asnumpy") else x, y.asnumpy() if hasattr(y, "asnumpy") else y)
            for x, y in batches]


@pytest.fixture(scope="module")
def raw_db(tmp_path_factory):
    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, (103, 1, 12, 10), dtype=np.uint8)
    labels = rng.integers(0, 300, 103)   # 1- and 2-byte varints: records of two lengths
    path = str(tmp_path_factory.mktemp("runs") / "db")
    write_lmdb(images, labels, path)
    return path, images, labels


@pytest.mark.parametrize("last_batch", ["keep", "discard", "rollover"])
@pytest.mark.parametrize("spec", ["scale: 0.00390625", "mean_value: 3 scale: 0.5", None])
def test_runs_equal_batch_by_batch(raw_db, monkeypatch, last_batch, spec):
    """Runs of three batches (and a shorter one at the end), over two epochs, in every mode."""
    monkeypatch.setattr(loader, "_RUN_BYTES", 3 * 8 * 120)
    ds = CaffeLMDBDataset(raw_db[0])
    t = CaffeTransform(spec) if spec else None
    want = one_by_one(ds.batches(8, t, last_batch=last_batch), epochs=2)
    for kw in ({}, {"as_numpy": True}, {"num_workers": 2}):
        ld = ds.batches(8, t, last_batch=last_batch, **kw)
        got = as_numpy(list(ld) + list(ld))
        assert_same(got, want)
    # the labels of a run are NDArrays over one run's memory: held ones keep their values
    ld = ds.batches(8, t, last_batch=last_batch)
    held = list(ld)
    assert all(isinstance(y, mx.nd.NDArray) and y.dtype == np.int32 for _, y in held)
    assert_same(as_numpy(held), want[:len(held)])


def test_runs_fall_back_to_batch_by_batch(tmp_path, rng):
    """A run that holds another shape, or a record that is not a Datum, is read again batch by
    batch: the same batches, and the error raised at the batch that holds the bad record."""
    imgs = [rng.integers(0, 256, (1, 6, 6), dtype=np.uint8) for _ in range(20)]
    imgs[13] = rng.integers(0, 256, (1, 7, 6), dtype=np.uint8)
    write_lmdb(imgs, range(20), str(tmp_path / "mixed"))
    ds = CaffeLMDBDataset(str(tmp_path / "mixed"))
    t = CaffeTransform("crop_size: 5 scale: 0.5")
    assert_same(as_numpy(ds.batches(4, t)), one_by_one(ds.batches(4, t)))
    seen = []
    with pytest.raises(gc.CaffeShapeError):
        for x, _ in ds.batches(4, as_numpy=True):   # no crop: the batch with the odd image fails
            seen.append(x)
    assert len(seen) == 3
    values = [array_to_datum(img).SerializeToString() for img in imgs[:12]]
    values[9] = b"\xff\xff\xff garbage"
    import lmdb
    env = lmdb.open(str(tmp_path / "bad"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        for i, v in enumerate(values):
            txn.put(b"%08d" % i, v)
    env.close()
    bad = CaffeLMDBDataset(str(tmp_path / "bad"))
    seen = []
    with pytest.raises(gc.CaffeIOError, match="record '00000009'"):
        for x, _ in bad.batches(2, as_numpy=True):
            seen.append(x)
    assert len(seen) == 4


def _child_sums(path, conn):
    ds_sums = [float(x.asnumpy().sum()) + float(y.asnumpy().sum())
               for x, y in CaffeLMDBDataset(path).batches(8, CaffeTransform("scale: 0.5"))]
    conn.send(ds_sums)
    conn.close()


def test_runs_after_fork(raw_db):
    """A forked process reads its own runs (its own environment) and gets the same batches."""
    ds = CaffeLMDBDataset(raw_db[0])
    want = [float(x.asnumpy().sum()) + float(y.asnumpy().sum())
            for x, y in ds.batches(8, CaffeTransform("scale: 0.5"))]
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_child_sums, args=(raw_db[0], child))
    p.start()
    got = parent.recv()
    p.join(30)
    assert p.exitcode == 0 and got == want


@pytest.mark.parametrize("shape,shuffled", [((1, 12, 10), False), ((3, 40, 30), False), ((1, 12, 10), True)])
def test_touch_stays_in_the_map(tmp_path, monkeypatch, shape, shuffled):
    """The touched span starts at the run's first page and ends by the end of the last record (the
    mapped file), also for runs at the end, values in overflow pages, and a database not written
    in key order; the values read are those of the plain read."""
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (60,) + shape, dtype=np.uint8)
    path = str(tmp_path / "db")
    if shuffled:
        import lmdb
        env = lmdb.open(path, map_size=1 << 22)
        with env.begin(write=True) as txn:
            for i in rng.permutation(60):
                txn.put(b"%08d" % i, array_to_datum(images[i], i).SerializeToString())
        env.close()
    else:
        write_lmdb(images, range(60), path)
    reader = _db.LMDBReader(path)
    keys = reader.keys()
    spans = []
    real = _db._MapLines

    def record(address, count):
        spans.append((address, count))
        return real(address, count)

    monkeypatch.setattr(_db, "_MapLines", record)
    for first, count in [(0, 60), (0, 2), (50, 10), (58, 2), (17, 23)]:
        blob, lengths = reader.get_run_joined(keys[first], count)
        assert blob == b"".join(reader.get_run(keys[first], count))
        assert lengths == [len(v) for v in reader.get_run(keys[first], count)]
        with reader.env.begin(buffers=True) as txn:
            cur = txn.cursor()
            cur.set_key(keys[first])
            start = _db._address(cur.value()) & ~4095
            cur.last()
            end = _db._address(cur.value()) + len(cur.value())
        for address, lines in spans:
            assert address == start and address + lines * _db._LINE <= end
        spans.clear()
    monkeypatch.setattr(_db, "TOUCH_BYTES", 0)   # off: the same values
    assert reader.get_run_joined(keys[3], 20)[0] == b"".join(reader.get_run(keys[3], 20))
    reader.close()


@pytest.mark.parametrize("spec", ["scale: 0.017", "mean_value: 104 mean_value: 117 mean_value: 123 scale: 0.5",
                                  "mean_value: 9", "mirror: true scale: 0.25", "mirror: true mean_value: 3",
                                  "crop_size: 30 mean_file: '{mean}' scale: 0.125", "mirror: true mean_file: '{mean}'",
                                  ""])
def test_cast_first_is_caffes_float32_arithmetic(tmp_path, spec):
    """Batches and large images (cast to float32 first, then each step in place) and small images
    (one mixed-type ufunc) give Caffe's ``(pixel - mean) * scale`` in float32 exactly."""
    from gluon_caffe.converter.mean import save_mean
    rng = np.random.default_rng(4)
    mean = rng.uniform(0, 255, (3, 40, 36)).astype(np.float32)
    save_mean(str(tmp_path / "m.binaryproto"), mean[None])
    spec = spec.format(mean=tmp_path / "m.binaryproto")
    t, t2 = CaffeTransform(spec, "test", seed=0), CaffeTransform(spec, "test", seed=0)
    sets = [rng.integers(0, 256, (16, 3, 40, 36), dtype=np.uint8), rng.integers(0, 256, (2, 3, 40, 36), dtype=np.uint8)]
    if "mean_file" not in spec:
        sets.append(rng.integers(0, 256, (4, 3, 12, 12), dtype=np.uint8))   # below _CAST_FIRST
    for images in sets:
        got = t.transform_batch(images)
        for img, out in zip(images, got):
            h, w, mirror = t2._draw(img.shape)
            ch, cw = (t2.crop_size,) * 2 if t2.crop_size else img.shape[1:]
            x = img[:, h:h + ch, w:w + cw].astype(np.float32)
            if t2.mean is not None:
                x = x - t2.mean[:, h:h + ch, w:w + cw]
            elif t2.mean_values is not None:
                x = x - (t2.mean_values.reshape(-1, 1, 1) if len(t2.mean_values) > 1 else t2.mean_values[0])
            if t2.scale != 1:
                x = x * t2.scale
            want = x[..., ::-1] if mirror else x
            assert want.dtype == np.float32
            np.testing.assert_array_equal(out, want)
            if not t.mirror:
                np.testing.assert_array_equal(t(img), want)
