"""The seed's Caffe MLP trained through Caffe's own loss: CaffeLossBlock(SoftmaxWithLoss) on Fashion-MNIST."""

import argparse
import time

import mxnet as mx
import numpy as np

import gluon_caffe as gc
from mlp_caffe_layers import build_mlp, evaluate, load_fashion

__all__ = ["main"]


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

    gc.set_random_seed(args.seed)
    mx.random.seed(args.seed)
    train_x, train_y = load_fashion("train", args.limit)
    test_x, test_y = load_fashion("t10k", args.test_limit)
    train_x = train_x.reshape(len(train_y), -1).astype(np.float32) / 255
    test_x = test_x.reshape(len(test_y), -1).astype(np.float32) / 255

    net = build_mlp()
    net.initialize()
    net.hybridize()
    # Caffe's SoftmaxWithLoss: the batch mean (normalization VALID) and its own gradient.
    loss_fn = gc.nn.CaffeLossBlock('layer { name: "softmax" type: "SoftmaxWithLoss" }')
    loss_fn.hybridize()
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": args.lr, "momentum": 0.9})
    loader = mx.gluon.data.DataLoader(mx.gluon.data.ArrayDataset(train_x, train_y.astype(np.float32)),
                                      batch_size=args.batch_size, shuffle=True, last_batch="discard")
    start = time.time()
    for epoch in range(args.epochs):
        total, batches = 0.0, 0
        for x, y in loader:
            with mx.autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(1)             # Caffe's loss is already averaged over the batch
            total += loss.asscalar()
            batches += 1
        if not args.quiet:
            print("epoch %d: loss %.4f, test accuracy %.4f (%.1fs)"
                  % (epoch, total / max(batches, 1), evaluate(net, test_x, test_y), time.time() - start))
    accuracy = evaluate(net, test_x, test_y)
    print("test accuracy %.4f (%d training images, %d epochs, %.1fs)"
          % (accuracy, len(train_y), args.epochs, time.time() - start))
    return accuracy


if __name__ == "__main__":
    main()
