"""The batch fast path (parse_datum_batch, CaffeTransform.transform_batch, CaffeBatchLoader) equals the per-sample path exactly."""

import lmdb
import mxnet as mx
import numpy as np
import pytest

import gluon_caffe as gc
from gluon_caffe.data import (CaffeBatchLoader, CaffeLMDBDataset, CaffeTransform, array_to_datum,
                              datum_to_array, parse_datum, parse_datum_batch, write_lmdb)
from gluon_caffe.proto import caffe_pb2

from .conftest import caffe_records, data_layer


def per_sample(ds, transform, batch_size, **kw):
    """Batches of the plain Gluon path, as numpy."""
    loader = mx.gluon.data.DataLoader(ds.transform_first(transform) if transform else ds,
                                      batch_size=batch_size, **kw)
    return [(x.asnumpy(), y.asnumpy()) for x, y in loader]


def as_numpy(batches):
    return [(x.asnumpy(), y.asnumpy()) for x, y in batches]


def assert_same(got, want):
    assert len(got) == len(want)
    for (x, y), (wx, wy) in zip(got, want):
        assert x.dtype == wx.dtype and x.shape == wx.shape
        np.testing.assert_array_equal(x, wx)
        np.testing.assert_array_equal(y, wy)


def serialized(datums):
    return [d.SerializeToString() for d in datums]


def test_parse_datum_batch_equals_protobuf(rng):
    imgs = rng.integers(0, 256, (9, 2, 5, 3), dtype=np.uint8)
    labels = [0, 1, 127, 128, 300, 2 ** 31 - 1, -1, -300, 5]   # 1-, 2-, 5- and 10-byte varints
    values = serialized(array_to_datum(img, lab) for img, lab in zip(imgs, labels))
    for _ in range(2):   # the second time through the cached layouts
        x, y, enc = parse_datum_batch(values)
        np.testing.assert_array_equal(x, imgs)
        np.testing.assert_array_equal(y, labels)
        assert y.dtype == np.int32 and not enc.any()
    # a label-less record, another shape, float_data, encoded and Caffe-written field orders mixed
    odd = [caffe_pb2.Datum(channels=2, height=5, width=3, data=imgs[0].tobytes()),
           array_to_datum(imgs[1][:, :4], 7),
           array_to_datum(imgs[2].astype(np.float32) / 3, 8),
           array_to_datum(imgs[3][:1], 9, encoded="png")]
    values = serialized(odd) + values[:2]
    x, y, enc = parse_datum_batch(values)
    assert isinstance(x, list) and enc.tolist() == [False, False, False, True, False, False]
    for i, v in enumerate(values):
        want = datum_to_array(parse_datum(v), False)
        assert x[i].dtype == want.dtype
        np.testing.assert_array_equal(x[i], want)
        assert y[i] == parse_datum(v).label


def test_joined_values_parse_like_the_list(rng):
    """Records read into one bytes (JoinedValues: the LMDB fast path) parse exactly as the list."""
    from gluon_caffe.data.datum import JoinedValues
    imgs = rng.integers(0, 256, (6, 1, 4, 5), dtype=np.uint8)
    uniform = serialized(array_to_datum(img, i * 50) for i, img in enumerate(imgs))
    mixed = uniform[:2] + serialized([array_to_datum(imgs[2][:, :3], 1),
                                      array_to_datum(imgs[3], 2, encoded="png")])
    for values in (uniform, mixed):
        joined = JoinedValues(b"".join(values), [len(v) for v in values])
        assert len(joined) == len(values) and list(joined) == values and joined[-1] == values[-1]
        for _ in range(2):
            got, want = parse_datum_batch(joined), parse_datum_batch(values)
            for g, w in zip(got, want):
                if isinstance(w, list):
                    assert all(np.array_equal(a, b) for a, b in zip(g, w))
                else:
                    np.testing.assert_array_equal(g, w)
    with pytest.raises(gc.CaffeIOError, match="record 1.*(truncated|corrupt)"):
        parse_datum_batch(JoinedValues(uniform[0] + uniform[1][:-9], [len(uniform[0]), len(uniform[1]) - 9]))
    with pytest.raises(ValueError, match="lengths add up to 3"):
        JoinedValues(b"abcd", [1, 2])


def test_parse_datum_batch_same_length_other_layout(rng):
    """Records as long as the cached layout's but laid out differently take the safe path."""
    a = array_to_datum(rng.integers(0, 256, (1, 4, 6), dtype=np.uint8), 3)
    b = array_to_datum(rng.integers(0, 256, (1, 6, 4), dtype=np.uint8), 4)   # same length
    c = caffe_pb2.Datum(label=5, channels=1, height=4, width=6, data=bytes(24), encoded=False)
    values = serialized([a, b, a])
    x, y, _ = parse_datum_batch(serialized([a, a]))
    x, y, _ = parse_datum_batch(values)
    assert [img.shape for img in x] == [(1, 4, 6), (1, 6, 4), (1, 4, 6)] and y.tolist() == [3, 4, 3]
    c_bytes = b"\x28\x05" + c.SerializeToString().replace(b"\x28\x05", b"")   # label first
    x, y, _ = parse_datum_batch([values[0], c_bytes])
    assert y.tolist() == [3, 5]
    np.testing.assert_array_equal(x[1], np.zeros((1, 4, 6), np.uint8))


def test_parse_datum_batch_names_the_bad_record(rng):
    good = array_to_datum(rng.integers(0, 256, (1, 4, 4), dtype=np.uint8), 1).SerializeToString()
    with pytest.raises(gc.CaffeIOError, match="key 'b'.*not a valid Datum"):
        parse_datum_batch([good, b"\xff\xff\xff junk"], lambda i: "key %r" % "ab"[i])
    with pytest.raises(gc.CaffeIOError, match="record 1.*(truncated|corrupt)"):
        parse_datum_batch([good, good[:-9]])


@pytest.mark.parametrize("transform", ["scale: 0.00390625", "mean_value: 33 scale: 0.5",
                                       "crop_size: 20 mean_value: 7", None])
def test_raw_batches_equal_per_sample(fashion_lmdb, transform):
    ds = CaffeLMDBDataset(fashion_lmdb[0])
    t = CaffeTransform(transform, "test") if transform else None
    want = per_sample(ds, t, 64)
    assert_same(as_numpy(ds.batches(64, t)), want)   # transformed straight into the NDArrays
    assert_same(as_numpy(ds.batches(64, t, num_workers=2)), want)
    assert_same(list(ds.batches(64, t, as_numpy=True, num_workers=2)), want)


def test_random_transform_equals_per_sample_with_the_same_seed(fashion_lmdb):
    ds = CaffeLMDBDataset(fashion_lmdb[0])
    spec = "crop_size: 24 mirror: true mean_value: 100 scale: 0.01"
    want = per_sample(ds, CaffeTransform(spec, "train", seed=3), 48)
    for workers in (0, 2):
        got = as_numpy(ds.batches(48, CaffeTransform(spec, "train", seed=3), num_workers=workers))
        assert_same(got, want)
    # the draws really vary: offsets and mirrors differ between images
    flat = np.concatenate([x for x, _ in want]).reshape(200, -1)
    assert len({row.tobytes() for row in flat}) == 200


def test_encoded_batches_equal_per_sample_and_caffe(encoded_lmdb, tmp_path):
    path, images = encoded_lmdb
    ds = CaffeLMDBDataset(path)
    t = CaffeTransform("crop_size: 20 mean_value: 104 mean_value: 117 mean_value: 123 force_color: true",
                       "test")
    raw = CaffeLMDBDataset(path, decode=False)
    want = per_sample(raw, t, 8)
    for workers in (0, 2):
        assert_same(as_numpy(raw.batches(8, t, num_workers=workers)), want)
    # and Caffe's Data layer gives the same numbers
    ref = caffe_records(path, len(ds), "crop_size: 20 mean_value: 104 mean_value: 117 mean_value: 123 "
                                       "force_color: true")
    np.testing.assert_array_equal(np.concatenate([x for x, _ in want]), np.stack([r[0] for r in ref]))
    # without a transform: natively decoded images of different sizes cannot be one batch
    with pytest.raises(gc.CaffeShapeError, match="differ in shape"):
        next(iter(ds.batches(4)))


def test_jpeg_mirror_mean_file_random_crop(tmp_path, rng):
    """The ImageNet-style pipeline: mean_file on the uncropped image, random crop and mirror."""
    from gluon_caffe.converter.mean import save_mean
    imgs = [rng.integers(0, 256, (3, 40, 44), dtype=np.uint8) for _ in range(20)]
    write_lmdb(imgs, range(20), str(tmp_path / "db"), encoded="jpg")
    save_mean(str(tmp_path / "mean.binaryproto"), rng.uniform(0, 255, (1, 3, 40, 44)).astype(np.float32))
    spec = 'crop_size: 32 mirror: true scale: 0.017 mean_file: "%s"' % (tmp_path / "mean.binaryproto")
    ds = CaffeLMDBDataset(str(tmp_path / "db"))
    want = per_sample(ds, CaffeTransform(spec, "train", seed=11), 6, last_batch="discard")
    got = as_numpy(ds.batches(6, CaffeTransform(spec, "train", seed=11), num_workers=2, last_batch="discard"))
    assert_same(got, want)
    assert len(got) == 3


def test_loader_options(fashion_lmdb):
    path, images, labels = fashion_lmdb
    ds = CaffeLMDBDataset(path)
    assert [len(ds.batches(64, last_batch=lb)) for lb in ("keep", "discard", "rollover")] == [4, 3, 3]
    x, y = next(iter(ds.batches(64)))
    assert isinstance(x, mx.nd.NDArray) and x.dtype == np.uint8 and y.dtype == np.int32
    np.testing.assert_array_equal(x.asnumpy()[:, 0], images[:64])
    # shuffle covers every record once, in a seeded order
    a = ds.batches(50, shuffle=True, seed=1, as_numpy=True)
    got = list(a)
    ys = np.concatenate([y for _, y in got])
    xs = np.concatenate([x for x, _ in got])
    assert sorted(map(bytes, xs.reshape(200, -1))) == sorted(map(bytes, images.reshape(200, -1)))
    order = [int(np.flatnonzero((images.reshape(200, -1) == row).all(1))[0]) for row in xs.reshape(200, -1)[:5]]
    np.testing.assert_array_equal(ys[:5], labels[order])
    assert [y.tolist() for _, y in CaffeBatchLoader(ds, 50, shuffle=True, seed=1, as_numpy=True)][0] \
        == got[0][1].tolist()
    # rollover carries the remainder into the next epoch
    r = ds.batches(64, last_batch="rollover", as_numpy=True)
    first = list(r)
    assert len(first) == 3 and len(r) == 3
    second = list(r)
    np.testing.assert_array_equal(second[0][0][:8, 0], images[192:])
    # sharded and negative indices go through the one-by-one read
    part = CaffeLMDBDataset(path, num_parts=3, part_index=1)
    xs = np.concatenate([x for x, _ in part.batches(16, as_numpy=True)])
    np.testing.assert_array_equal(xs[:, 0], images[1::3])
    x, y, _ = ds.read_batch([-1, 0, 5])
    np.testing.assert_array_equal(x[:, 0], images[[199, 0, 5]])
    with pytest.raises(IndexError):
        ds.read_batch([200])
    with pytest.raises(ValueError):
        ds.batches(0)


def test_loader_errors_reach_the_caller_and_threads_stop(tmp_path, rng):
    import threading
    x = rng.integers(0, 256, (40, 1, 4, 4), dtype=np.uint8)
    path = str(tmp_path / "db")
    write_lmdb(x, range(40), path)
    env = lmdb.open(path, lib_version=0)
    with env.begin(write=True) as txn:
        txn.put(b"00000033", b"\xff\xff\xff garbage")
    env.close()
    before = threading.active_count()
    ds = CaffeLMDBDataset(path)
    for workers in (0, 2):
        with pytest.raises(gc.CaffeIOError, match="record '00000033'.*not a valid Datum"):
            list(ds.batches(8, num_workers=workers))
    # an abandoned threaded iteration stops its threads
    it = iter(ds.batches(4, num_workers=2))
    next(it)
    it.close()
    assert threading.active_count() == before


def test_leveldb_batches(tmp_path, fashion_lmdb):
    _, images, labels = fashion_lmdb
    write_lmdb(images[:30], labels[:30], str(tmp_path / "ldb"), backend="leveldb")
    ds = CaffeLMDBDataset(str(tmp_path / "ldb"), backend="leveldb")
    assert_same(as_numpy(ds.batches(8)), per_sample(ds, None, 8))
    ds.close()


def test_caffe_data_layer_equals_fast_path(fashion_lmdb):
    """The raw pipeline's first TEST batches equal Caffe's Data layer (the benchmark's check)."""
    path = fashion_lmdb[0]
    net = gc.CaffeNet(data_layer(path, 64, "scale: 0.00390625"), phase="test")
    ds = CaffeLMDBDataset(path)
    for (x, y), _ in zip(ds.batches(64, CaffeTransform("scale: 0.00390625"), as_numpy=True), range(3)):
        blobs = net.forward()
        np.testing.assert_array_equal(x, blobs["data"])
        np.testing.assert_array_equal(y, blobs["label"].astype(np.int32))


@pytest.mark.parametrize("array", [np.arange(12, dtype=np.float32).reshape(3, 4), np.arange(7, dtype=np.int32),
                                   np.arange(24, dtype=np.uint8).reshape(2, 3, 4)[:, ::2],
                                   np.arange(1 << 21, dtype=np.float32).reshape(2, -1)])
def test_batches_become_ndarrays_exactly(array):
    """Small batches are copied into a new NDArray, large ones handed over; both exact and usable."""
    from gluon_caffe.data.loader import _to_ndarray
    nd = _to_ndarray(array, None)
    assert nd.dtype == array.dtype and nd.shape == array.shape
    np.testing.assert_array_equal(nd.asnumpy(), array)
    np.testing.assert_array_equal((nd * 2).asnumpy(), array * 2)


@pytest.mark.parametrize("spec", ["crop_size: 30 mirror: true scale: 0.017 mean_file: '{mean}'",
                                  "mirror: true mean_file: '{mean}'",
                                  "crop_size: 30 mirror: true mean_value: 1.5 mean_value: 2 mean_value: 200",
                                  "crop_size: 30 mirror: true scale: 0.5"])
def test_decoded_views_take_the_same_arithmetic(tmp_path, rng, spec):
    """OpenCV's decode is HWC; its CHW view goes through per-plane OpenCV arithmetic, a contiguous
    CHW image through numpy: the two agree bit for bit, and so does a non-contiguous `out`."""
    from gluon_caffe.converter.mean import save_mean
    from gluon_caffe.data import decode_image, encode_image
    save_mean(str(tmp_path / "m.binaryproto"), rng.uniform(0, 255, (1, 3, 36, 40)).astype(np.float32))
    spec = spec.format(mean=tmp_path / "m.binaryproto")
    views = [decode_image(encode_image(rng.integers(0, 256, (3, 36, 40), dtype=np.uint8), ".jpg"))
             for _ in range(12)]
    assert views[0].strides[0] == 1
    flat = [np.ascontiguousarray(v) for v in views]
    a = CaffeTransform(spec, "train", seed=4).transform_batch(views)
    b = CaffeTransform(spec, "train", seed=4).transform_batch(flat)
    assert a.tobytes() == b.tobytes()
    strided = np.zeros(a.shape[:3] + (a.shape[3] * 2,), np.float32)[..., ::2]
    CaffeTransform(spec, "train", seed=4).transform_batch(views, out=strided)
    assert strided.tobytes() == a.tobytes()


def test_encoded_random_batches_of_varying_sizes_equal_per_sample(encoded_lmdb):
    """Images decoded and transformed one by one in threads: the draws still follow record order
    when the images differ in size (each draw needs the shapes of the images before it)."""
    path, _ = encoded_lmdb
    spec = "crop_size: 20 mirror: true mean_value: 104 mean_value: 117 mean_value: 123 force_color: true"
    raw = CaffeLMDBDataset(path, decode=False)
    want = per_sample(raw, CaffeTransform(spec, "train", seed=9), 8)
    for workers in (0, 1, 3):
        got = as_numpy(raw.batches(8, CaffeTransform(spec, "train", seed=9), num_workers=workers))
        assert_same(got, want)
    # decoded by the dataset (native), transformed by the batch: the same draws
    colour = CaffeLMDBDataset(path, decode="color")
    want = per_sample(colour, CaffeTransform(spec, "train", seed=2), 8)
    assert_same(as_numpy(colour.batches(8, CaffeTransform(spec, "train", seed=2), num_workers=2)), want)


def test_failed_encoded_batch_leaves_the_draws_as_they_were(encoded_lmdb):
    """A batch that cannot be transformed (crop larger than one image) raises Caffe's error and
    makes no draw: the next batch is what it would have been."""
    path, images = encoded_lmdb
    raw = CaffeLMDBDataset(path, decode=False)
    values = [raw[i][0] for i in range(8)]
    small = min(range(8), key=lambda i: min(images[i].shape[1:]))
    crop = min(images[small].shape[1:]) + 1
    assert any(min(images[i].shape[1:]) >= crop for i in range(8))
    spec = "crop_size: %d mirror: true force_color: true" % crop
    from concurrent.futures import ThreadPoolExecutor
    t = CaffeTransform(spec, "train", seed=5)
    fine = [v for i, v in enumerate(values) if min(images[i].shape[1:]) >= crop]
    with ThreadPoolExecutor(2) as pool:
        for p in (None, pool):
            with pytest.raises(gc.CaffeShapeError, match="crop_size"):
                t.transform_batch(values, pool=p)
        got = t.transform_batch(fine, pool=pool)
    assert got.tobytes() == CaffeTransform(spec, "train", seed=5).transform_batch(fine).tobytes()


def test_held_batches_stay_intact_while_memory_is_reused(tmp_path, rng):
    """Batch memory comes back for later batches only once a batch (and every view of it) is
    gone: batches and views held across epochs keep their values."""
    from gluon_caffe.data.transforms import _POOL
    imgs = [rng.integers(0, 256, (3, 170, 170), dtype=np.uint8) for _ in range(40)]
    write_lmdb(imgs, range(40), str(tmp_path / "db"), encoded="png")
    spec = "crop_size: 160 mirror: true mean_value: 100"   # 4.9 MB batches: NDArrays over them
    ds = CaffeLMDBDataset(str(tmp_path / "db"))
    want = per_sample(ds, CaffeTransform(spec, "train", seed=1), 16)
    t = CaffeTransform(spec, "train", seed=1)
    held = list(ds.batches(16, t, num_workers=2))              # NDArrays over pooled memory
    views = [x[1:] for x, _ in ds.batches(16, t, as_numpy=True)]   # views only: their batches gone
    more = as_numpy(ds.batches(16, t, num_workers=2))        # memory reused meanwhile
    assert_same(as_numpy(held), want)
    t2 = CaffeTransform(spec, "train", seed=1)
    for _ in ds.batches(16, t2):
        pass
    second = as_numpy(ds.batches(16, t2))
    for v, (x, _) in zip(views, second):
        np.testing.assert_array_equal(v, x[1:])
    assert len(more) == 3
    # a freed block is handed out again; a block with a view alive is not
    a = _POOL.empty((128, 1024), np.float32)
    view, addr = a[3:], a.ctypes.data
    del a
    b = _POOL.empty((128, 1024), np.float32)
    assert b.ctypes.data != addr
    del view
    c = _POOL.empty((128, 1024), np.float32)
    assert c.ctypes.data == addr
