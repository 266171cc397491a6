"""LeNet on Fashion-MNIST with real Caffe convolutions (CaffeLayers) and Gluon Dense layers, fed by Caffe's Data layer; compared with the same LeNet in pure Gluon."""

import argparse
import os
import tempfile
import time

import mxnet as mx
import numpy as np
from tqdm import tqdm

import gluon_caffe as gc
import gluon_caffe.data as gcd
from mlp_caffe_layers import load_fashion

__all__ = ["DATA_LAYERS", "conv_prototxt", "build_lenet", "copy_params", "write_fashion_lmdbs", "train",
           "evaluate", "main"]

# Caffe's own examples/mnist/lenet_train_test.prototxt data layers: one net, a layer per phase.
DATA_LAYERS = """
layer {{ name: "fashion" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{train}" batch_size: {batch} backend: LMDB }} }}
layer {{ name: "fashion" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{test}" batch_size: {test_batch} backend: LMDB }} }}
"""


def conv_prototxt(name, num_output, kernel=5):
    """A Convolution layer as in Caffe's LeNet (xavier weights, constant bias)."""
    return ('layer { name: "%s" type: "Convolution" convolution_param { num_output: %d kernel_size: %d '
            'stride: 1 weight_filler { type: "xavier" } bias_filler { type: "constant" } } }'
            % (name, num_output, kernel))


def build_lenet(caffe_conv):
    """LeNet: conv 20 5x5, max-pool 2, conv 50 5x5, max-pool 2, Dense 500 ReLU, Dense 10.

    Parameters
    ----------
    caffe_conv : bool
        The two convolutions are real Caffe layers (``CaffeLayer``); otherwise Gluon ``Conv2D``.
    """
    net = mx.gluon.nn.HybridSequential()
    with net.name_scope():
        if caffe_conv:
            net.add(gc.nn.CaffeLayer(conv_prototxt("conv1", 20)))
        else:
            net.add(mx.gluon.nn.Conv2D(20, 5))
        net.add(mx.gluon.nn.MaxPool2D(2, 2))
        if caffe_conv:
            net.add(gc.nn.CaffeLayer(conv_prototxt("conv2", 50)))
        else:
            net.add(mx.gluon.nn.Conv2D(50, 5))
        net.add(mx.gluon.nn.MaxPool2D(2, 2), mx.gluon.nn.Flatten(),
                mx.gluon.nn.Dense(500, activation="relu"), mx.gluon.nn.Dense(10))
    return net


def copy_params(src, dst):
    """Give `dst` the values of `src`'s parameters (same architecture, same parameter order)."""
    src_params, dst_params = list(src.collect_params().values()), list(dst.collect_params().values())
    assert len(src_params) == len(dst_params)
    for s, d in zip(src_params, dst_params):
        d.set_data(s.data().reshape(d.shape))


def write_fashion_lmdbs(workdir, limit=None, test_limit=None, seed=0):
    """Fashion-MNIST as two LMDBs of Caffe Datums; training records in one fixed shuffled order
    (Caffe's Data layer reads a database in key order)."""
    paths = {}
    for split, n, name in (("train", limit, "train"), ("t10k", test_limit, "test")):
        images, labels = load_fashion(split, n)
        if name == "train":
            order = np.random.default_rng(seed).permutation(len(labels))
            images, labels = images[order], labels[order]
        paths[name] = os.path.join(workdir, "fashion_%s_lmdb" % name)
        gcd.write_lmdb(images[:, None], labels, paths[name], overwrite=True)
    return paths


def evaluate(net, test_data):
    """Test accuracy of `net` over one pass of `test_data`."""
    metric = mx.metric.Accuracy()
    for x, y in test_data:
        metric.update(y, net(x))
    return metric.get()[1]


def train(net, train_data, test_data, epochs, lr, quiet=False, title=""):
    """SGD with momentum 0.9 and weight decay 5e-4 (Caffe's LeNet solver) on softmax cross-entropy.

    Returns
    -------
    (float, float)
        Test accuracy after the last epoch and the training time in seconds (evaluation excluded).
    """
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd",
                               {"learning_rate": lr, "momentum": 0.9, "wd": 5e-4})
    seconds = 0.0
    accuracy = 0.0
    for epoch in range(epochs):
        start = time.time()
        total, seen = 0.0, 0
        bar = tqdm(train_data, total=len(train_data), disable=quiet, leave=False,
                   desc="%s epoch %d" % (title, epoch), unit="batch")
        for x, y in bar:
            with mx.autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(x.shape[0])
            total += loss.sum().asscalar()
            seen += x.shape[0]
            bar.set_postfix(loss="%.4f" % (total / seen), refresh=False)
        seconds += time.time() - start
        accuracy = evaluate(net, test_data)
        if not quiet:
            tqdm.write("%s epoch %d: loss %.4f, test accuracy %.4f (%.1fs training)"
                       % (title, epoch, total / max(seen, 1), accuracy, seconds))
    return accuracy, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--limit", type=int, default=None, help="training images to use (default all 60,000)")
    parser.add_argument("--test-limit", type=int, default=None, help="test images (default all 10,000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="where the LMDBs go (default: a temp dir)")
    parser.add_argument("--no-gluon", action="store_true", help="skip the pure-Gluon comparison")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, only the accuracies")
    args = parser.parse_args(argv)

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="fashion_lmdb_")
        args.workdir = tmp.name
    start = time.time()
    paths = write_fashion_lmdbs(args.workdir, args.limit, args.test_limit, args.seed)
    if not args.quiet:
        print("LMDBs written to %s (%.1fs)" % (args.workdir, time.time() - start))
    prototxt = DATA_LAYERS.format(train=paths["train"], test=paths["test"], batch=args.batch_size,
                                  test_batch=500)
    # Caffe's own Data layer reads both phases: the seed's CaffeDataIter, done properly.
    train_data = gcd.CaffeDataset(prototxt, phase="train")
    test_data = gcd.CaffeDataset(prototxt, phase="test")

    gc.set_random_seed(args.seed)       # Caffe's fillers (the CaffeLayers' default init)
    mx.random.seed(args.seed)           # Xavier for the Dense layers
    caffe_net = build_lenet(caffe_conv=True)
    caffe_net.initialize(mx.init.Xavier())
    gluon_net = build_lenet(caffe_conv=False)
    gluon_net.initialize(mx.init.Xavier())
    x0, _ = next(iter(test_data))
    caffe_net(x0)
    gluon_net(x0)                       # shapes are known now: start both from the same weights
    copy_params(caffe_net, gluon_net)
    caffe_net.hybridize()
    gluon_net.hybridize()

    results = {}
    nets = [("caffe-conv", caffe_net)] + ([] if args.no_gluon else [("pure-gluon", gluon_net)])
    for title, net in nets:
        results[title] = train(net, train_data, test_data, args.epochs, args.lr, args.quiet, title)
    for title, (accuracy, seconds) in results.items():
        print("%-10s LeNet: test accuracy %.4f (%d training images, %d epochs, %.1fs training)"
              % (title, accuracy, train_data.num_records, args.epochs, seconds))
    if len(results) == 2:
        print("difference (caffe-conv - pure-gluon): %+.2f points"
              % (100 * (results["caffe-conv"][0] - results["pure-gluon"][0])))
    if tmp is not None:
        tmp.cleanup()
    return results


if __name__ == "__main__":
    main()
