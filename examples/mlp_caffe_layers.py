"""The seed's Caffe MLP (InnerProduct 128 -> TanH -> 64 -> TanH -> 10) from CaffeLayers, trained on Fashion-MNIST."""

import argparse
import gzip
import os
import time

import mxnet as mx
import numpy as np

import gluon_caffe as gc

__all__ = ["FASHION", "load_fashion", "build_mlp", "evaluate", "main"]

FASHION = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


def load_fashion(split, limit=None):
    """Fashion-MNIST images (N, 28, 28) uint8 and labels (N,) int64 from the Debian package.

    Parameters
    ----------
    split : {'train', 't10k'}
    limit : int, optional
        Read only the first `limit` records.
    """
    n = limit if limit else -1
    with gzip.open(os.path.join(FASHION, "%s-images-idx3-ubyte.gz" % split)) as f:
        f.read(16)
        images = np.frombuffer(f.read(n * 784 if n > 0 else -1), np.uint8).reshape(-1, 28, 28)
    with gzip.open(os.path.join(FASHION, "%s-labels-idx1-ubyte.gz" % split)) as f:
        f.read(8)
        labels = np.frombuffer(f.read(n if n > 0 else -1), np.uint8).astype(np.int64)
    return images, labels


def _ip(num_output, name):
    return ('layer { name: "%s" type: "InnerProduct" inner_product_param { num_output: %d '
            'weight_filler { type: "xavier" } bias_filler { type: "constant" } } }' % (name, num_output))


def build_mlp():
    """The seed's MLP: fc1 128, TanH, fc2 64, TanH, fc3 10, every layer a real Caffe layer.

    Returns
    -------
    mxnet.gluon.nn.HybridSequential
        Outputs the 10 class scores (no softmax).
    """
    net = mx.gluon.nn.HybridSequential()
    with net.name_scope():
        net.add(gc.nn.CaffeLayer(_ip(128, "fc1")), gc.nn.CaffeLayer('layer { type: "TanH" }'),
                gc.nn.CaffeLayer(_ip(64, "fc2")), gc.nn.CaffeLayer('layer { type: "TanH" }'),
                gc.nn.CaffeLayer(_ip(10, "fc3")))
    return net


def evaluate(net, images, labels, batch_size=1000):
    """Accuracy of `net` (scores) on flat float images in [0, 1]."""
    metric = mx.metric.Accuracy()
    for i in range(0, len(labels), batch_size):
        x = mx.nd.array(images[i:i + batch_size])
        metric.update(mx.nd.array(labels[i:i + batch_size]), net(x))
    return metric.get()[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=None, help="training images to use (default all 60,000)")
    parser.add_argument("--test-limit", type=int, default=None, help="test images (default all 10,000)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="print only the final accuracy")
    args = parser.parse_args(argv)

    gc.set_random_seed(args.seed)       # Caffe's fillers
    mx.random.seed(args.seed)
    train_x, train_y = load_fashion("train", args.limit)
    test_x, test_y = load_fashion("t10k", args.test_limit)
    train_x = train_x.reshape(len(train_y), -1).astype(np.float32) / 255
    test_x = test_x.reshape(len(test_y), -1).astype(np.float32) / 255

    net = build_mlp()
    net.initialize()                    # CaffeLayers default to their prototxt's fillers
    net.hybridize()
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": args.lr, "momentum": 0.9})
    loader = mx.gluon.data.DataLoader(mx.gluon.data.ArrayDataset(train_x, train_y.astype(np.float32)),
                                      batch_size=args.batch_size, shuffle=True, last_batch="discard")
    start = time.time()
    for epoch in range(args.epochs):
        total, seen = 0.0, 0
        for x, y in loader:
            with mx.autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(x.shape[0])
            total += loss.sum().asscalar()
            seen += x.shape[0]
        if not args.quiet:
            print("epoch %d: loss %.4f, test accuracy %.4f (%.1fs)"
                  % (epoch, total / max(seen, 1), evaluate(net, test_x, test_y), time.time() - start))
    accuracy = evaluate(net, test_x, test_y)
    print("test accuracy %.4f (%d training images, %d epochs, %.1fs)"
          % (accuracy, len(train_y), args.epochs, time.time() - start))
    return accuracy


if __name__ == "__main__":
    main()
