"""Fixtures for the data tests: Fashion-MNIST subsets and synthetic images as real Caffe databases in tmp dirs."""

import gzip
import os
import subprocess

import numpy as np
import pytest

import gluon_caffe as gc
from gluon_caffe.data import write_lmdb

FASHION = "/usr/share/datasets/fashion-mnist"


def fashion_mnist(n, split="t10k"):
    """The first `n` images (uint8 N x 28 x 28) and labels of Debian's dataset-fashion-mnist."""
    with gzip.open(os.path.join(FASHION, "%s-images-idx3-ubyte.gz" % split), "rb") as f:
        f.read(16)
        images = np.frombuffer(f.read(n * 784), np.uint8).reshape(n, 28, 28)
    with gzip.open(os.path.join(FASHION, "%s-labels-idx1-ubyte.gz" % split), "rb") as f:
        f.read(8)
        labels = np.frombuffer(f.read(n), np.uint8).astype(np.int64)
    return images, labels


def assert_same(got, want):
    """Two lists of (data, label) numpy batches are equal: dtypes, shapes and every value."""
    assert len(got) == len(want)
    for (x, y), (wx, wy) in zip(got, want):
        assert x.dtype == wx.dtype and x.shape == wx.shape and y.dtype == wy.dtype
        np.testing.assert_array_equal(x, wx)
        np.testing.assert_array_equal(y, wy)


def caffe_tool(name):
    """Path of a tool built with libcaffe (convert_imageset, compute_image_mean...)."""
    path = os.path.join(gc.caffe_info()["prefix"], "bin", name)
    assert os.path.isfile(path), "libcaffe tool %s is missing" % path
    return path


def run_tool(name, *args):
    subprocess.run([caffe_tool(name)] + [str(a) for a in args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def smooth_images(rng, n, min_size=20, max_size=40, channels=3):
    """Photo-like images (smooth gradients plus noise) of varying sizes, uint8 CHW."""
    import cv2
    out = []
    for i in range(n):
        h = int(rng.integers(min_size, max_size + 1))
        w = int(rng.integers(min_size, max_size + 1))
        base = rng.integers(0, 256, (max(h // 6, 2), max(w // 6, 2), channels)).astype(np.uint8)
        img = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
        if img.ndim == 2:
            img = img[:, :, None]
        img = np.clip(img.astype(np.int16) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        out.append(img.transpose(2, 0, 1))
    return out


def data_layer(source, batch_size, transform="", backend="LMDB", tops=("data", "label")):
    top = " ".join('top: "%s"' % t for t in tops)
    return ('layer { name: "data" type: "Data" %s transform_param { %s } '
            'data_param { source: "%s" batch_size: %d backend: %s } }'
            % (top, transform, source, batch_size, backend))


def caffe_records(source, n, transform="", backend="LMDB", phase="test"):
    """The first `n` records through real Caffe's Data layer (batch 1, so shapes may vary)."""
    net = gc.CaffeNet(data_layer(source, 1, transform, backend), phase=phase)
    out = []
    for _ in range(n):
        blobs = net.forward()
        out.append((blobs["data"][0], int(blobs["label"][0])))
    return out


def tree_state(path):
    """Names, sizes and mtimes of everything under `path` (to prove readers write nothing)."""
    state = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.stat(p)
            state[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return state


@pytest.fixture(scope="session")
def fashion_lmdb(tmp_path_factory):
    """200 Fashion-MNIST test images as a raw uint8 LMDB (keys %08d), with the arrays."""
    images, labels = fashion_mnist(200)
    path = str(tmp_path_factory.mktemp("fashion") / "fashion_lmdb")
    write_lmdb(images, labels, path)
    return path, images, labels


@pytest.fixture(scope="session")
def encoded_lmdb(tmp_path_factory):
    """24 photo-like colour images of varying sizes, alternately JPEG and PNG encoded, plus
    two grayscale ones, with their raw pixels."""
    import cv2
    rng = np.random.default_rng(5)
    images = smooth_images(rng, 24, 24, 40)
    images += [img[:1] for img in smooth_images(rng, 2, 24, 30)]
    path = str(tmp_path_factory.mktemp("encoded") / "enc_lmdb")
    import lmdb
    from gluon_caffe.proto import caffe_pb2
    env = lmdb.open(path, map_size=1 << 26, lib_version=0)
    params = [[cv2.IMWRITE_JPEG_QUALITY, 90], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_QUALITY, 40]]
    with env.begin(write=True) as txn:
        for i, img in enumerate(images):
            hwc = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
            ext = ".png" if i % 4 == 3 else ".jpg"
            ok, buf = cv2.imencode(ext, hwc, params[i % 3] if ext == ".jpg" else [])
            assert ok
            d = caffe_pb2.Datum(data=buf.tobytes(), encoded=True, label=i)
            txn.put(b"%08d" % i, d.SerializeToString())
    env.close()
    return path, images
