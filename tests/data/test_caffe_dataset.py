"""CaffeDataset: Caffe's own Data/ImageData layer as exact epochs of NDArray batches."""

import numpy as np
import pytest

import gluon_caffe as gc
from gluon_caffe.data import CaffeDataset, CaffeLMDBDataset, CaffeTransform, write_lmdb

from .conftest import data_layer, tree_state


@pytest.fixture(scope="module")
def small_lmdb(tmp_path_factory):
    """10 records whose pixels encode their index, so batches show which records they hold."""
    x = np.zeros((10, 1, 3, 4), np.uint8) + np.arange(10, dtype=np.uint8)[:, None, None, None]
    path = str(tmp_path_factory.mktemp("small") / "db")
    write_lmdb(x, np.arange(10) + 100, path)
    return path


def _epoch(ds):
    out = []
    for data, label in ds:
        d, l = data.asnumpy(), label.asnumpy()
        np.testing.assert_array_equal(d[:, 0, 0, 0] + 100, l)   # labels travel with their images
        out.append(l.astype(int) - 100)
    return out


def test_keep(small_lmdb):
    ds = CaffeDataset(data_layer(small_lmdb, 4), phase="test")
    assert len(ds) == 3 and ds.num_records == 10
    for _ in range(3):
        batches = _epoch(ds)
        assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_discard(small_lmdb):
    ds = CaffeDataset(data_layer(small_lmdb, 4), phase="test", last_batch="discard")
    assert len(ds) == 2
    for _ in range(2):
        assert [b.tolist() for b in _epoch(ds)] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_rollover(small_lmdb):
    ds = CaffeDataset(data_layer(small_lmdb, 4), phase="test", last_batch="rollover")
    lens, seen = [], []
    for _ in range(4):
        lens.append(len(ds))
        seen.extend(np.concatenate(_epoch(ds)).tolist())
    assert lens == [2, 3, 2, 3]                      # (carry + 10) // 4 with carries 0, 2, 0, 2
    assert seen == list(range(10)) * 4               # every record, in order, none twice
    # an abandoned epoch starts the next one from the first record
    it = iter(ds)
    next(it)
    it.close()
    assert np.concatenate(_epoch(ds)).tolist()[:4] == [0, 1, 2, 3]


def test_aligned_epochs_reuse_the_layer(small_lmdb):
    ds = CaffeDataset(data_layer(small_lmdb, 5), phase="test")
    _epoch(ds)
    net = ds._net
    assert [b.tolist() for b in _epoch(ds)] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert ds._net is net
    it = iter(ds)
    next(it)
    it.close()                                        # abandoned mid-epoch: rebuilt
    assert [b.tolist() for b in _epoch(ds)][0] == [0, 1, 2, 3, 4]


def test_flat_and_phase_selection_from_a_whole_net(fashion_lmdb, tmp_path):
    path, images, labels = fashion_lmdb
    net = """name: "lenet"
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.00390625 } data_param { source: "%s" batch_size: 64 backend: LMDB } }
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { scale: 0.00390625 crop_size: 20 } data_param { source: "%s" batch_size: 100 backend: LMDB } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1" inner_product_param { num_output: 10 } }
""" % (path, path)
    f = tmp_path / "lenet.prototxt"
    f.write_text(net)
    train = CaffeDataset(str(f), phase="train", flat=True)
    test = CaffeDataset(str(f), phase="test")
    assert (train.batch_size, len(train)) == (64, 4)
    assert (test.batch_size, len(test)) == (100, 2)
    x, y = next(iter(train))
    assert x.shape == (64, 784)
    np.testing.assert_array_equal(x.asnumpy(), images[:64].reshape(64, -1).astype(np.float32)
                                  * np.float32(0.00390625))
    # the seed's two paths agree: Caffe's layer and CaffeLMDBDataset + CaffeTransform
    xt, yt = next(iter(test))
    t = CaffeTransform("scale: 0.00390625 crop_size: 20", "test")
    ds = CaffeLMDBDataset(path).transform_first(t)
    np.testing.assert_array_equal(xt.asnumpy(), np.stack([ds[i][0] for i in range(100)]))
    np.testing.assert_array_equal(yt.asnumpy(), labels[:100])


def test_leveldb_source_is_not_written(tmp_path, fashion_lmdb):
    _, images, labels = fashion_lmdb
    path = str(tmp_path / "ldb")
    write_lmdb(images[:30], labels[:30], path, backend="leveldb")
    before = tree_state(path)
    ds = CaffeDataset(data_layer(path, 8, backend="LEVELDB"), phase="test")
    assert len(ds) == 4
    for _ in range(2):
        got = np.concatenate([x.asnumpy() for x, _ in ds])
        np.testing.assert_array_equal(got[:, 0], images[:30])
    assert tree_state(path) == before


def test_image_data_layer(tmp_path, rng):
    import cv2
    lines = []
    for i in range(5):
        img = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / ("%d.png" % i)), img)
        lines.append("%d.png %d" % (i, i))
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    layer = ('layer { name: "img" type: "ImageData" top: "data" top: "label" '
             'image_data_param { source: "%s" root_folder: "%s/" batch_size: 2 } }' % (tmp_path / "list.txt", tmp_path))
    ds = CaffeDataset(layer, phase="test")
    assert len(ds) == 3
    for _ in range(2):
        labels = np.concatenate([y.asnumpy() for _, y in ds])
        assert labels.tolist() == [0, 1, 2, 3, 4]
    (tmp_path / "list.txt").write_text("\n".join(lines + ["missing.png 1"]) + "\n")
    with pytest.raises(gc.CaffeIOError, match="image '.*missing.png' listed in"):
        CaffeDataset(layer, phase="test")


def test_bad_input(tmp_path, small_lmdb, fashion_lmdb):
    with pytest.raises(gc.CaffeIOError, match="layer 'data' \\(Data\\): data_param.source: .*does not exist"):
        CaffeDataset(data_layer(str(tmp_path / "nope"), 4))
    with pytest.raises(gc.CaffeIOError, match="not a LevelDB"):
        CaffeDataset(data_layer(small_lmdb, 4, backend="LEVELDB"))
    with pytest.raises(gc.CaffeShapeError, match="record '00000000'.*crop_size 5 is larger than the 3x4 image"):
        CaffeDataset(data_layer(small_lmdb, 4, "crop_size: 5"))
    from gluon_caffe.proto import caffe_pb2
    mean = tmp_path / "mean.binaryproto"
    mean.write_bytes(caffe_pb2.BlobProto(num=1, channels=1, height=28, width=28,
                                         data=[0.0] * 784).SerializeToString())
    with pytest.raises(gc.CaffeShapeError, match="mean_file .* has shape \\(1, 28, 28\\), the image \\(1, 3, 4\\)"):
        CaffeDataset(data_layer(small_lmdb, 4, "mean_file: '%s'" % mean))
    CaffeDataset(data_layer(fashion_lmdb[0], 4, "mean_file: '%s'" % mean))  # the right shape is fine
    with pytest.raises(gc.UnsupportedLayerError, match="no Data or ImageData layer for phase TRAIN"):
        CaffeDataset('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 } } }')
    with pytest.raises(gc.CaffeProtoError):
        CaffeDataset('layer { name: "x" type: "Data" data_parm { } }')
    with pytest.raises(ValueError, match="last_batch"):
        CaffeDataset(data_layer(small_lmdb, 4), last_batch="pad")
