"""CaffeTransform against Caffe's DataTransformer (through the real Data layer), and its random draws."""

import numpy as np
import pytest

import gluon_caffe as gc
from gluon_caffe.data import CaffeLMDBDataset, CaffeTransform, load_mean_file, write_lmdb
from gluon_caffe.proto import caffe_pb2

from .conftest import caffe_records, run_tool, smooth_images


@pytest.fixture(scope="module")
def colour_lmdb(tmp_path_factory):
    """12 raw 3x30x34 images and Caffe's own mean of them (compute_image_mean)."""
    rng = np.random.default_rng(11)
    images = np.stack([np.pad(im, ((0, 0), (0, 30 - im.shape[1]), (0, 34 - im.shape[2])), mode="edge")
                       for im in smooth_images(rng, 12, 20, 30)])
    root = tmp_path_factory.mktemp("colour")
    path = str(root / "lmdb")
    write_lmdb(images, np.arange(12) % 4, path)
    mean = str(root / "mean.binaryproto")
    run_tool("compute_image_mean", path, mean)
    return path, images, mean


TEST_PARAMS = [
    "",
    "scale: 0.00390625",
    "crop_size: 21",
    "crop_size: 20 mean_value: 104 mean_value: 117 mean_value: 123 scale: 0.017",
    "mean_value: 127.5 scale: 0.0078125",
    "crop_size: 25 mean_file: '{mean}' scale: 0.0125",
    "mean_file: '{mean}'",
]


@pytest.mark.parametrize("param", TEST_PARAMS)
def test_raw_bit_exact_vs_caffe(colour_lmdb, param):
    path, images, mean = colour_lmdb
    param = param.format(mean=mean)
    ref = caffe_records(path, 12, param)
    ds = CaffeLMDBDataset(path).transform_first(CaffeTransform(param, "test"))
    for i in range(12):
        got, label = ds[i]
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, ref[i][0], err_msg="record %d, %s" % (i, param))
        assert label == ref[i][1]


def test_fashion_mnist_bit_exact_vs_caffe(fashion_lmdb):
    path = fashion_lmdb[0]
    param = "scale: 0.00390625 mean_value: 33 crop_size: 24"
    ref = caffe_records(path, 50, param)
    t = CaffeTransform(param)
    ds = CaffeLMDBDataset(path)
    for i in range(50):
        np.testing.assert_array_equal(t(ds[i][0]), ref[i][0])


@pytest.mark.parametrize("param", ["", "force_color: true crop_size: 22", "force_gray: true scale: 0.5",
                                   "force_color: true crop_size: 23 mean_value: 100 scale: 0.01"])
def test_encoded_bit_exact_vs_caffe(encoded_lmdb, param):
    path, images = encoded_lmdb
    n = len(images)
    ref = caffe_records(path, n, param)
    t = CaffeTransform(param, "test")
    ds = CaffeLMDBDataset(path, decode=False)   # the transform decodes, honouring force_*
    for i in range(n):
        got = t(ds[i][0])
        np.testing.assert_array_equal(got, ref[i][0], err_msg="record %d, %s" % (i, param))


def test_single_mean_value_on_mixed_channels(encoded_lmdb):
    """Caffe replicates a lone mean_value in place, so after a colour image a grayscale one fails
    its CHECK (in the prefetch thread); the transform applies the value to any channel count."""
    path, images = encoded_lmdb
    t = CaffeTransform("mean_value: 100")
    ds = CaffeLMDBDataset(path)
    for i in (0, len(images) - 1):
        img = ds[i][0]
        np.testing.assert_array_equal(t(img), img.astype(np.float32) - 100)


def test_png_lossless_and_jpeg_close(encoded_lmdb):
    path, images = encoded_lmdb
    ds = CaffeLMDBDataset(path)
    for i, original in enumerate(images):
        got = ds[i][0]
        if i % 4 == 3:
            np.testing.assert_array_equal(got, original)
        else:
            assert np.abs(got.astype(int) - original).mean() < 12


def test_mean_file_reader(colour_lmdb):
    path, images, mean_path = colour_lmdb
    mean = load_mean_file(mean_path)
    assert mean.shape == (3, 30, 34) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, images.mean(axis=0), atol=1e-3)


def test_train_crop_offsets_and_mirror_are_uniform():
    img = np.arange(1 * 9 * 11, dtype=np.uint8).reshape(1, 9, 11)
    t = CaffeTransform("crop_size: 5 mirror: true", "train", seed=0)
    n = 4000
    offsets, mirrored = [], 0
    for _ in range(n):
        out = t(img)
        first = int(out[0, 0, 0])
        corner = int(out[0, 0, -1])
        if corner < first:             # mirrored: the top-left pixel went to the right
            mirrored += 1
            first = corner
        offsets.append(divmod(first, 11))
    h = np.bincount([o[0] for o in offsets], minlength=5)
    w = np.bincount([o[1] for o in offsets], minlength=7)
    assert len(h) == 5 and len(w) == 7            # every offset 0..H-crop, 0..W-crop, no more
    # chi-square against uniform, well inside the 0.999 quantile (18.5 for 4 dof, 22.5 for 6)
    assert ((h - n / 5) ** 2 / (n / 5)).sum() < 18.5
    assert ((w - n / 7) ** 2 / (n / 7)).sum() < 22.5
    assert abs(mirrored / n - 0.5) < 4 * np.sqrt(0.25 / n)


def test_seeded_reproducible_and_test_phase_is_centre():
    img = np.random.default_rng(1).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    runs = [[CaffeTransform("crop_size: 8 mirror: true", "train", seed=7)(img) for _ in range(20)]
            for _ in range(2)]
    np.testing.assert_array_equal(np.stack(runs[0]), np.stack(runs[1]))
    centre = CaffeTransform("crop_size: 8", "test")(img)
    np.testing.assert_array_equal(centre, img[:, 4:12, 4:12].astype(np.float32))


def test_message_and_layer_forms():
    msg = caffe_pb2.TransformationParameter(scale=2.0, crop_size=2)
    img = np.ones((1, 4, 4), np.uint8)
    a = CaffeTransform(msg)(img)
    b = CaffeTransform("transform_param { scale: 2 crop_size: 2 }")(img)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (1, 2, 2) and (a == 2).all()
    out, label = CaffeTransform("scale: 3")(img, 5)   # Dataset.transform passes the label along
    assert label == 5 and (out == 3).all()


def test_bad_parameters(colour_lmdb, tmp_path):
    path, images, mean = colour_lmdb
    img = images[0]
    with pytest.raises(gc.CaffeShapeError, match="crop_size 31 is larger than the 30x34 image"):
        CaffeTransform("crop_size: 31")(img)
    small = tmp_path / "small.binaryproto"
    small.write_bytes(caffe_pb2.BlobProto(num=1, channels=3, height=8, width=8,
                                          data=[0.0] * 192).SerializeToString())
    with pytest.raises(gc.CaffeShapeError, match=r"mean_file '.*small.binaryproto' has shape \(3, 8, 8\), "
                                                 r"the image \(3, 30, 34\)"):
        CaffeTransform("mean_file: '%s'" % small)(img)
    with pytest.raises(gc.CaffeIOError, match="mean_file '.*absent'"):
        CaffeTransform("mean_file: '%s'" % (tmp_path / "absent"))
    junk = tmp_path / "junk.binaryproto"
    junk.write_bytes(b"\xff\xfe junk")
    with pytest.raises(gc.CaffeProtoError, match="not a BlobProto"):
        CaffeTransform("mean_file: '%s'" % junk)
    with pytest.raises(gc.CaffeProtoError, match="mean_file and mean_value"):
        CaffeTransform("mean_file: '%s' mean_value: 3" % mean)
    with pytest.raises(gc.CaffeProtoError, match="both force_color and force_gray"):
        CaffeTransform("force_color: true force_gray: true")
    with pytest.raises(gc.CaffeShapeError, match="1 mean_value or as many as channels"):
        CaffeTransform("mean_value: 1 mean_value: 2")(img)
    with pytest.raises(gc.CaffeShapeError, match="decode=False"):
        CaffeTransform("force_gray: true")(img)
    with pytest.raises(gc.CaffeProtoError, match="transform_param"):
        CaffeTransform("crop_sise: 3")
    with pytest.raises(ValueError, match="phase"):
        CaffeTransform("", "val")
