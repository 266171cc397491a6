"""RSS stays flat over a pass of a 20k-record raw database: in a DataLoader worker and on the fast path."""

import mxnet as mx
import numpy as np
import pytest

from gluon_caffe.data import CaffeLMDBDataset, CaffeTransform, write_lmdb

from .conftest import fashion_mnist

RECORDS = 20000
LIMIT_MB = 20
# The pass reads 16 MB of records. LMDB maps the file, and each page read stays in RSS (as a file
# page) until the mapping goes: readers drop it every _db.REMAP_BYTES (8 MB) read.
MAPPED_LIMIT_MB = 12


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/self/status" % field)


class RSSProbe:
    """Yields the process's VmRSS and RssFile (kB) with every 256th record: in a DataLoader
    worker, it measures the worker."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        img, label = self.dataset[i]
        probe = (status_kb("VmRSS"), status_kb("RssFile")) if i % 256 == 0 else (-1, -1)
        return img, label, np.array(probe, np.int64)


@pytest.fixture(scope="module")
def big_lmdb(tmp_path_factory):
    images, labels = fashion_mnist(RECORDS, "train")
    path = str(tmp_path_factory.mktemp("big") / "train_lmdb")
    write_lmdb(images, labels, path)
    return path


def growth_mb(samples):
    samples = np.asarray(samples)
    steady = samples[1:]            # after the first records: libraries and buffers are in
    return (steady.max(axis=0) - steady[0]) / 1024.0


def test_dataloader_worker_rss_flat(big_lmdb):
    ds = CaffeLMDBDataset(big_lmdb)
    loader = mx.gluon.data.DataLoader(RSSProbe(ds), batch_size=64, num_workers=1)
    seen = []
    for _, _, probe in loader:
        p = probe.asnumpy()
        seen.extend(p[p[:, 0] >= 0].tolist())
    assert len(seen) == -(-RECORDS // 256)
    rss, rss_file = growth_mb(seen)
    assert rss < LIMIT_MB, "worker VmRSS grew %.1f MB over %d records" % (rss, RECORDS)
    assert rss_file < MAPPED_LIMIT_MB, "worker RssFile grew %.1f MB" % rss_file


def test_fast_path_rss_flat(big_lmdb):
    ds = CaffeLMDBDataset(big_lmdb)
    t = CaffeTransform("scale: 0.00390625")
    seen = []
    for epoch in range(2):
        for k, (x, y) in enumerate(ds.batches(64, t, as_numpy=True)):
            if k % 16 == 0:
                seen.append((status_kb("VmRSS"), status_kb("RssFile")))
    rss, rss_file = growth_mb(seen)
    assert rss < LIMIT_MB, "VmRSS grew %.1f MB over two passes of %d records" % (rss, RECORDS)
    assert rss_file < MAPPED_LIMIT_MB, "RssFile grew %.1f MB" % rss_file


def test_remapping_under_concurrent_readers(fashion_lmdb, monkeypatch):
    """With the mapping dropped after every transaction, readers in several threads still read
    every record right (an environment is only closed when no transaction is open on it)."""
    from concurrent.futures import ThreadPoolExecutor

    from gluon_caffe.data import _db
    monkeypatch.setattr(_db, "REMAP_BYTES", 1)
    path, images, labels = fashion_lmdb
    ds = CaffeLMDBDataset(path)

    def read_all(start):
        got = [ds[(start + i) % len(ds)][0][0] for i in range(len(ds))]
        return np.roll(np.stack(got), start, axis=0)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(read_all, s) for s in (0, 50, 100, 150)]
        batches = np.concatenate([x for x, _ in ds.batches(16, as_numpy=True, num_workers=2)])
        for f in futures:
            np.testing.assert_array_equal(f.result(), images)
    np.testing.assert_array_equal(batches[:, 0], images)
