"""Data-parallel Fashion-MNIST LeNet with Caffe convolutions on MXNet's dist_sync kvstore (2 workers + 1 server).

Run ``python examples/dist_lenet.py``: it writes the LMDBs, then starts a scheduler, the servers
and the workers with :func:`gluon_caffe.distributed.launch_local`, each worker running this same
file. Each worker reads its own shard of the training LMDB (``num_parts=kv.num_workers,
part_index=kv.rank``) through Caffe's own Data layer (``--data caffe``) or through
CaffeLMDBDataset + CaffeTransform (``--data lmdb``), and ``gluon.Trainer(..., kvstore=kv)``
sums the workers' gradients on the parameter server every step.
"""

import argparse
import gc as gc_module
import json
import os
import signal
import sys
import tempfile
import time

import mxnet as mx  # first: ps-lite's protobuf-lite must bind before anything else loads protobuf
import numpy as np

import gluon_caffe as gc
import gluon_caffe.data as gcd
from gluon_caffe.distributed import StepWatchdog, launch_local

__all__ = ["FASHION", "load_fashion", "write_lmdbs", "data_prototxt", "build_lenet", "SeededInit", "init_params",
           "param_vector", "shard_batches", "train_worker", "main"]

SCALE = 0.00390625                               # Caffe's LeNet transform_param scale (1/256)
RESULT_TAG = "GLUON_CAFFE_RESULT "               # the line a worker prints its summary on (JSON)

# The single-process examples already read Fashion-MNIST and write its LMDBs: reuse them.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lenet_caffe_conv import write_fashion_lmdbs as write_lmdbs  # noqa: E402
from mlp_caffe_layers import FASHION, load_fashion  # noqa: E402,F401


def data_prototxt(source, batch_size):
    """Caffe's LeNet Data layer over `source`."""
    return ('layer { name: "fashion" type: "Data" top: "data" top: "label" transform_param { scale: %r } '
            'data_param { source: "%s" batch_size: %d backend: LMDB } }' % (SCALE, source, batch_size))


def build_lenet():
    """LeNet: Caffe conv 20 5x5, max-pool, Caffe conv 50 5x5, max-pool, Dense 500 ReLU, Dense 10."""
    def conv(name, n):
        return gc.CaffeLayer('layer { name: "%s" type: "Convolution" convolution_param { num_output: %d '
                             'kernel_size: 5 weight_filler { type: "xavier" } } }' % (name, n))
    net = mx.gluon.nn.HybridSequential()
    with net.name_scope():
        net.add(conv("conv1", 20), mx.gluon.nn.MaxPool2D(2, 2), conv("conv2", 50), mx.gluon.nn.MaxPool2D(2, 2),
                mx.gluon.nn.Flatten(), mx.gluon.nn.Dense(500, activation="relu"), mx.gluon.nn.Dense(10))
    return net


class SeededInit(mx.init.Initializer):
    """Xavier-uniform weights from a numpy RNG seeded by (seed, parameter position); zero biases."""

    def __init__(self, seed, position):
        super().__init__()
        self.seed, self.position = seed, position

    def _init_weight(self, name, arr):
        shape = arr.shape
        fan_in = int(np.prod(shape[1:]))
        fan_out = shape[0] * int(np.prod(shape[2:]))
        a = np.sqrt(6.0 / (fan_in + fan_out))
        rng = np.random.default_rng([self.seed, self.position])
        arr[:] = rng.uniform(-a, a, shape).astype(np.float32)

    def _init_bias(self, name, arr):
        arr[:] = 0

    _init_default = _init_weight


def init_params(net, seed):
    """Give every parameter a seeded initialiser (resolved at the first forward) and initialise.

    Every worker computes the same values (the kvstore takes rank 0's anyway) and a
    single-process reference starts from exactly the same point, whichever parameter names
    the process gave the blocks.
    """
    for position, (_, p) in enumerate(net.collect_params().items()):
        p.init = SeededInit(seed, position)
    net.initialize()


def param_vector(net):
    """All parameters, sorted by name, as one float32 vector."""
    return np.concatenate([p.data().asnumpy().ravel() for _, p in sorted(net.collect_params().items())])


def shard_batches(source, batch_size, num_parts, part_index, data="caffe"):
    """This worker's training batches for one epoch: ``(x, y)`` NDArrays.

    ``caffe``: Caffe's Data layer, sharded by CaffeDataset(num_parts, part_index); ``lmdb``:
    CaffeLMDBDataset(num_parts, part_index) records through CaffeTransform. Both give the same
    records in the same order, transformed the same way.
    """
    if data == "caffe":
        return gcd.CaffeDataset(data_prototxt(source, batch_size), phase="train", last_batch="discard",
                                num_parts=num_parts, part_index=part_index)
    if data != "lmdb":
        raise ValueError("data must be 'caffe' or 'lmdb', got %r" % (data,))
    ds = gcd.CaffeLMDBDataset(source, num_parts=num_parts, part_index=part_index)
    tf = gcd.CaffeTransform("scale: %r" % SCALE, phase="train")

    class _Batches:
        def __len__(self):
            return len(ds) // batch_size

        def __iter__(self):
            for start in range(0, len(self) * batch_size, batch_size):
                samples = [ds[i] for i in range(start, start + batch_size)]
                x = np.stack([np.asarray(tf(img)) for img, _ in samples]).astype(np.float32)
                yield mx.nd.array(x), mx.nd.array([lbl for _, lbl in samples], dtype=np.float32)
    return _Batches()


def train_worker(args):
    """One worker (or, with ``--local``, a plain single process): train, report, optionally trace."""
    kv = None if args.local else mx.kv.create(args.kvstore)
    rank, num_workers = (0, 1) if kv is None else (kv.rank, kv.num_workers)
    n = gcd.CaffeLMDBDataset(args.train_lmdb).__len__()
    # dist_sync needs the same number of steps on every worker: the smallest shard's batches.
    steps_per_epoch = (n // num_workers) // args.batch_size
    if steps_per_epoch < 1:
        raise SystemExit("%d records are too few for %d workers x batch %d" % (n, num_workers, args.batch_size))
    batches = shard_batches(args.train_lmdb, args.batch_size, num_workers, rank, args.data)

    net = build_lenet()
    init_params(net, args.seed)
    net.hybridize()
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": args.lr, "momentum": args.momentum},
                               kvstore=kv)
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    global_batch = args.batch_size * num_workers

    trace = {"x": [], "y": [], "loss": [], "params": []} if args.trace else None
    total_steps = args.epochs * steps_per_epoch if args.steps is None else args.steps
    watchdog = StepWatchdog(args.step_timeout).start() if args.step_timeout else None
    step, samples, seconds, losses, after_first = 0, 0, 0.0, [], None
    while step < total_steps:
        epoch_start, epoch_loss, epoch_steps = time.time(), 0.0, 0
        for i, (x, y) in enumerate(batches):
            if i == steps_per_epoch or step == total_steps:
                break
            with mx.autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(global_batch)      # the server sums the workers' gradients: scale by the global batch
            value = float(loss.mean().asscalar())
            step += 1
            epoch_loss += value
            epoch_steps += 1
            samples += x.shape[0]
            losses.append(value)
            if step == 1:   # steady-state throughput excludes the first step (kvstore init, layer set-up)
                after_first = time.time()
            if watchdog is not None:
                watchdog.feed()
            if trace is not None:
                trace["x"].append(x.asnumpy())
                trace["y"].append(y.asnumpy())
                trace["loss"].append(value)
                trace["params"].append(param_vector(net))
            if args.die_at_step and step == args.die_at_step and rank == num_workers - 1:
                print("worker rank %d: killing itself after step %d (--die-at-step)" % (rank, step), flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
        seconds += time.time() - epoch_start
        if not args.quiet:
            print("worker rank %d/%d: %d steps, loss %.4f, %.0f samples/s" % (
                rank, num_workers, step, epoch_loss / max(epoch_steps, 1), samples / max(seconds, 1e-9)), flush=True)
    # Wait for the last step's work: CaffeLayer backward runs as a Python custom operator, and one
    # still queued when the interpreter finalises makes MXNet's shutdown hook wait forever.
    mx.nd.waitall()
    if watchdog is not None:
        watchdog.stop()
    steady = (samples - args.batch_size, time.time() - after_first) if step > 1 else (0, 0.0)

    accuracy = None
    if args.test_lmdb and rank == 0 and not args.no_eval:
        metric = mx.metric.Accuracy()
        test = gcd.CaffeDataset(data_prototxt(args.test_lmdb, 500), phase="test")
        for x, y in test:
            metric.update(y, net(x))
        accuracy = metric.get()[1]
    if trace is not None:
        os.makedirs(args.trace, exist_ok=True)
        keys = gcd.CaffeLMDBDataset(args.train_lmdb, num_parts=num_workers, part_index=rank)
        np.savez(os.path.join(args.trace, "worker-%d.npz" % rank), rank=rank, num_workers=num_workers,
                 keys=np.array([keys.key(i) for i in range(len(keys))], dtype=object),
                 x=np.stack(trace["x"]), y=np.stack(trace["y"]),
                 loss=np.array(trace["loss"]), params=np.stack(trace["params"]))
    # Leave the job now, while everything is alive: the kvstore's destructor holds the final
    # barrier of all nodes; left to interpreter exit, MXNet's shutdown hook can wait forever.
    del trainer
    if hasattr(batches, "reset"):
        batches.reset()     # a CaffeDataset's live Data layer (prefetch thread) must go before exit
    del batches
    if kv is not None:
        kv._barrier()
    del kv
    gc_module.collect()
    result = {"rank": rank, "num_workers": num_workers, "steps": step, "samples": samples, "seconds": seconds,
              "steady_samples": steady[0], "steady_seconds": steady[1], "first_loss": losses[0],
              "last_loss": losses[-1], "test_accuracy": accuracy}
    print(RESULT_TAG + json.dumps(result), flush=True)
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--workers", type=int, default=2)
    p.add_argument("-s", "--servers", type=int, default=1)
    p.add_argument("--kvstore", default="dist_sync", help="dist_sync (default), dist_async, dist_device_sync")
    p.add_argument("--data", choices=("caffe", "lmdb"), default="caffe",
                   help="caffe: Caffe's Data layer sharded by rank; lmdb: CaffeLMDBDataset + CaffeTransform")
    p.add_argument("--limit", type=int, default=12000, help="training images (default 12,000 of 60,000)")
    p.add_argument("--test-limit", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=32, help="per worker")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="where the LMDBs go (default: a temporary directory)")
    p.add_argument("--train-lmdb", default=None, help="use this training LMDB (skip writing one)")
    p.add_argument("--test-lmdb", default=None)
    p.add_argument("--timeout", type=float, default=900, help="seconds for the whole job")
    p.add_argument("--step-timeout", type=float, default=None, help="a worker exits if a step takes longer")
    p.add_argument("--trace", default=None, help="directory for each worker's per-step batches and parameters")
    p.add_argument("--die-at-step", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--local", action="store_true", help="train in this process, no kvstore (the 1-process reference)")
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    """Driver: write the LMDBs and launch the job; worker (DMLC_ROLE=worker): train."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if os.environ.get("DMLC_ROLE") == "worker" or args.local:
        if args.train_lmdb is None:
            raise SystemExit("a worker needs --train-lmdb (run without DMLC_ROLE to have it written)")
        return train_worker(args)
    tmp = None
    if args.train_lmdb is None:
        if args.workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="dist_lenet_")
            args.workdir = tmp.name
        paths = write_lmdbs(args.workdir, args.limit, args.test_limit, args.seed)
        argv += ["--train-lmdb", paths["train"], "--test-lmdb", paths["test"]]
    start = time.time()
    try:
        results = launch_local([sys.executable, os.path.abspath(__file__)] + argv, args.workers, args.servers,
                               timeout=args.timeout, capture=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    summaries = []
    for r in results:
        sys.stdout.write(r.stdout)
        summaries += [json.loads(l[len(RESULT_TAG):]) for l in r.stdout.splitlines() if l.startswith(RESULT_TAG)]
    samples = sum(s["samples"] for s in summaries)
    seconds = max(s["seconds"] for s in summaries)
    accuracy = [s["test_accuracy"] for s in summaries if s["test_accuracy"] is not None]
    print("%d workers + %d server(s), %s: %d steps, loss %.4f -> %.4f, %.0f samples/s%s, job %.1fs"
          % (args.workers, args.servers, args.kvstore, summaries[0]["steps"], summaries[0]["first_loss"],
             summaries[0]["last_loss"], samples / seconds,
             ", test accuracy %.4f" % accuracy[0] if accuracy else "", time.time() - start))
    return summaries


if __name__ == "__main__":
    main()
