"""The seed's MNIST data path on real data: Fashion-MNIST -> LMDB -> Caffe's Data layer and the Gluon Dataset."""

import argparse
import gzip
import os
import tempfile
import time

import mxnet as mx
import numpy as np

import gluon_caffe.data as gcd

FASHION = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


def load_idx(split, n):
    with gzip.open(os.path.join(FASHION, "%s-images-idx3-ubyte.gz" % split)) as f:
        f.read(16)
        images = np.frombuffer(f.read(n * 784), np.uint8).reshape(-1, 28, 28)
    with gzip.open(os.path.join(FASHION, "%s-labels-idx1-ubyte.gz" % split)) as f:
        f.read(8)
        labels = np.frombuffer(f.read(n), np.uint8).astype(np.int64)
    return images, labels


LAYER = """layer {{ name: "fashion" type: "Data" top: "data" top: "label"
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{source}" batch_size: {batch} backend: LMDB }} }}"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=int, default=10000, help="training images to convert")
    parser.add_argument("--test", type=int, default=2000, help="test images to convert")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workdir", default=None, help="where the LMDBs go (default: a temp dir)")
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="fashion_lmdb_")
    paths = {}
    for split, n, name in (("train", args.train, "train"), ("t10k", args.test, "test")):
        paths[name] = os.path.join(workdir, "fashion_%s_lmdb" % name)
        images, labels = load_idx(split, n)
        gcd.write_lmdb(images, labels, paths[name], overwrite=True)
        print("wrote %d %s records to %s" % (len(labels), name, paths[name]))

    # (1) Caffe's own Data layer, the seed's io.CaffeDataIter done properly (flat=True as there).
    caffe_test = gcd.CaffeDataset(LAYER.format(source=paths["test"], batch=args.batch_size),
                                  phase="test", flat=True)
    # (2)+(3) the per-sample Dataset with Caffe's transform_param, through Gluon's DataLoader.
    transform = gcd.CaffeTransform("scale: 0.00390625", "test")
    gluon_test = mx.gluon.data.DataLoader(
        gcd.CaffeLMDBDataset(paths["test"]).transform_first(transform), batch_size=args.batch_size)
    (x1, y1), (x2, y2) = next(iter(caffe_test)), next(iter(gluon_test))
    assert np.array_equal(x1.asnumpy(), x2.asnumpy().reshape(x1.shape))
    assert np.array_equal(y1.asnumpy(), y2.asnumpy())
    print("first TEST batches identical: Caffe Data layer == CaffeLMDBDataset + CaffeTransform")

    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(128, activation="relu"), mx.gluon.nn.Dense(10))
    net.initialize(mx.init.Xavier())
    net.hybridize()
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    train = mx.gluon.data.DataLoader(
        gcd.CaffeLMDBDataset(paths["train"]).transform_first(gcd.CaffeTransform("scale: 0.00390625", "train")),
        batch_size=args.batch_size, shuffle=True, num_workers=2, last_batch="discard")
    for epoch in range(args.epochs):
        start, seen = time.time(), 0
        for x, y in train:
            x, y = x.as_in_context(mx.cpu()), y.as_in_context(mx.cpu())  # workers give cpu_shared
            with mx.autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(x.shape[0])
            seen += x.shape[0]
        metric = mx.metric.Accuracy()
        for x, y in caffe_test:          # evaluate through Caffe's own Data layer
            metric.update(y, net(x))
        print("epoch %d: %d images in %.1fs, test accuracy %.3f"
              % (epoch, seen, time.time() - start, metric.get()[1]))


if __name__ == "__main__":
    main()
