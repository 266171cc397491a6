"""CaffeBatchLoader: whole batches from a CaffeLMDBDataset (one read per batch, vectorised parse and transform, decoding threads); DataLoader and batchify for Gluon."""

import ctypes
import math
import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import CaffeShapeError
from .. import _ndarray
from .._ndarray import ndarray_rows as _ndarray_rows, new_cpu_ndarray as _new_cpu_ndarray
from . import _shm
from .datum import decode_image
from .transforms import _map_chunked

__all__ = ["CaffeBatchLoader", "DataLoader", "batchify"]

_LAST_BATCH = ("keep", "discard", "rollover")
_DONE = object()


_COPY_BELOW = 4 << 20   # bytes: smaller batches are copied into a new NDArray, larger handed over
_RUN_BYTES = 512 << 10  # bytes of raw pixels up to which consecutive batches are read and parsed together
_RUN_BATCHES = 16       # batches read together at most

_CHAR_ARRAYS = {}   # nbytes -> ctypes.c_char * nbytes (making the type costs more than the view)


def _ndarray_view(address, shape, dtype):
    """A numpy array over `address` (memory the caller keeps alive)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    kind = _CHAR_ARRAYS.get(nbytes)
    if kind is None:
        if len(_CHAR_ARRAYS) > 256:
            _CHAR_ARRAYS.clear()
        kind = _CHAR_ARRAYS[nbytes] = ctypes.c_char * nbytes
    return np.frombuffer(kind.from_address(address), dtype).reshape(shape)


def _to_ndarray(array, ctx):
    """`array` as a new NDArray, at the least cost MXNet allows.

    On the CPU a small batch is copied straight into a freshly allocated NDArray (nothing can be
    pending on it, so no engine round trip: a fifth of ``mx.nd.array``'s cost); a large one (a
    JPEG batch) is handed over without a copy through DLPack (``mx.nd.from_numpy``: the numpy
    array, built for this batch only, becomes read-only). Elsewhere it is copied.
    """
    if ctx is not None:
        import mxnet as mx
        if ctx != mx.cpu():
            return mx.nd.array(array, ctx=ctx, dtype=array.dtype)
    if array.ndim and array.size and array.nbytes < _COPY_BELOW:
        made = _new_cpu_ndarray(array.shape, array.dtype)
        if made is not None:
            _ndarray_view(made[1], array.shape, array.dtype)[...] = array
            return made[0]
    import mxnet as mx
    return mx.nd.from_numpy(np.ascontiguousarray(array), zero_copy=True)


class CaffeBatchLoader:
    """Batches of a :class:`CaffeLMDBDataset`, built a whole batch at a time.

    The fast path next to ``gluon.data.DataLoader``: each batch is one read transaction (one
    cursor over consecutive records when not shuffled; in order, consecutive batches of raw
    records are read and parsed together, up to half a megabyte of pixels at a time, and each
    batch is a slice of that), raw Datums are parsed for the whole batch with a few numpy
    operations (:func:`parse_datum_batch`), encoded images are decoded
    by a pool of threads (OpenCV releases the GIL), each thread taking the next image and
    transforming it as soon as it is decoded, and :meth:`CaffeTransform.transform_batch` writes
    every image straight into the batch array (memory reused from batch to batch once the
    previous batches are freed). The output equals the per-sample path
    (``DataLoader(dataset.transform_first(transform), batch_size)``, same seed, no workers) bit
    for bit.

    Parameters
    ----------
    dataset : CaffeLMDBDataset
    batch_size : int
    transform : CaffeTransform, optional
        Applied to every image (float32 output); without it images come as the dataset yields
        them (uint8 or float32 CHW; all of one shape).
    shuffle : bool
        A new random order each epoch (each batch then reads its records one by one, still in
        one transaction).
    last_batch : {'keep', 'discard', 'rollover'}
        The last ``len(dataset) % batch_size`` records, as Gluon's DataLoader treats them.
    num_workers : int
        Threads that decode and transform; with more than 0, batches are also built ahead, in a
        background thread, while the caller uses the previous ones.
    prefetch : int, optional
        Batches built ahead (default ``2`` with workers).
    as_numpy : bool
        Yield numpy arrays instead of NDArrays.
    ctx : mxnet.Context, optional
        Where NDArray batches go (default CPU).
    seed : int, optional
        Seeds the shuffle order.

    Examples
    --------
    >>> ds = gc.data.CaffeLMDBDataset("train_lmdb")
    >>> t = gc.data.CaffeTransform('crop_size: 227 mirror: true mean_file: "mean.binaryproto"', "train")
    >>> for data, label in ds.batches(64, t, shuffle=True, num_workers=2):
    ...     pass

    Notes
    -----
    Threads, not processes: decoding (OpenCV) and the transform's numpy operations run without
    the GIL, and nothing is pickled or copied between processes. Random crops and mirrors are
    drawn in record order (one thread at a time, as soon as the shapes of the images before are
    known), so a seeded transform gives the same batches whatever `num_workers` is. Workers only
    help when there are idle cores: decoding is the cost of a JPEG pipeline, and on a machine
    already busy ``num_workers=0`` does as well. Raw records need no workers (a batch of 64 MNIST
    records takes about 0.07 ms). In order, the label NDArrays of the batches read together are
    views of one NDArray (each batch's data is its own).
    """

    def __init__(self, dataset, batch_size, transform=None, shuffle=False, last_batch="keep",
                 num_workers=0, prefetch=None, as_numpy=False, ctx=None, seed=None):
        if int(batch_size) < 1:
            raise ValueError("batch_size must be positive, got %r" % (batch_size,))
        if last_batch not in _LAST_BATCH:
            raise ValueError("last_batch must be one of %s, got %r" % (_LAST_BATCH, last_batch))
        if int(num_workers) < 0:
            raise ValueError("num_workers must be >= 0, got %r" % (num_workers,))
        self.dataset, self.batch_size, self.transform = dataset, int(batch_size), transform
        self.shuffle, self.last_batch = bool(shuffle), last_batch
        self.num_workers = int(num_workers)
        self.prefetch = max(1, int(prefetch)) if prefetch is not None else 2
        self.as_numpy, self.ctx = bool(as_numpy), ctx
        self._rng = np.random.default_rng(seed)
        self._carry = np.zeros(0, np.int64)

    def __len__(self):
        n, b = len(self.dataset) + (len(self._carry) if self.last_batch == "rollover" else 0), self.batch_size
        return -(-n // b) if self.last_batch == "keep" else n // b

    def _epoch(self):
        """The indices of this epoch's batches (ranges when in order)."""
        n, b = len(self.dataset), self.batch_size
        if not self.shuffle and (self.last_batch != "rollover" or not len(self._carry)):
            batches = [range(i, min(i + b, n)) for i in range(0, n, b)]
            if self.last_batch == "keep" or n % b == 0:
                return batches
            if self.last_batch == "rollover":
                self._carry = np.arange(n - n % b, n)
            return batches[:-1]
        order = self._rng.permutation(len(self.dataset)) if self.shuffle else np.arange(len(self.dataset))
        if self.last_batch == "rollover":
            order = np.concatenate([self._carry, order])
        b = self.batch_size
        full = len(order) // b * b
        batches = [order[i:i + b] for i in range(0, full, b)]
        if self.last_batch == "keep" and full < len(order):
            batches.append(order[full:])
        self._carry = order[full:] if self.last_batch == "rollover" else self._carry
        return batches

    def build(self, indices, pool=None, into_ndarray=False):
        """One batch as numpy arrays: ``(data, label)`` for the records at `indices`.

        Parameters
        ----------
        indices : sequence of int
            Dataset indices.
        pool : concurrent.futures.Executor, optional
            Threads for decoding and transforming.
        into_ndarray : bool
            Raw records with a transform may come back as a CPU NDArray, written in place.

        Returns
        -------
        data : numpy.ndarray or mxnet.nd.NDArray
            ``(N, C, H, W)``: float32 after a transform, else as the records hold them.
        label : numpy.ndarray
            int32 ``(N,)``.
        """
        return self._assemble(indices, self.dataset.read_batch(indices), pool, into_ndarray)

    def _reads(self, batches, labels_nd=False):
        """``(indices, dataset.read_batch(indices))`` for each of `batches`, in order.

        Consecutive ranges (an epoch in order) of raw records of one shape are read and parsed
        several batches at a time, up to :data:`_RUN_BYTES` of pixels per read (one transaction,
        one cursor, one parse), and each batch is a slice of that. Anything else (shuffled
        batches, encoded or mixed records, or a read that fails) is read batch by batch, as
        :meth:`build` does, so that errors surface at the batch they concern.

        With `labels_nd`, the labels of a run read together are copied once into one CPU
        NDArray and each batch's labels are an NDArray over its rows (cheaper than an NDArray
        per batch); elsewhere they stay numpy arrays.
        """
        group, i, n = 1, 0, len(batches)   # group: batches per read, from the first batch's size
        while i < n:
            j = i + 1
            if isinstance(batches[i], range):
                while (j < min(n, i + group) and isinstance(batches[j], range)
                       and batches[j].start == batches[j - 1].stop):
                    j += 1
            if j - i == 1:
                read = self.dataset.read_batch(batches[i])
                if i == 0 and isinstance(batches[0], range):
                    images = read[0]
                    if isinstance(images, np.ndarray) and images.ndim == 4 and images.nbytes:
                        group = max(1, min(_RUN_BATCHES, _RUN_BYTES // images.nbytes))
                yield batches[i], read
                i += 1
                continue
            try:
                images, labels, encoded = self.dataset.read_batch(range(batches[i].start, batches[j - 1].stop))
            except Exception:  # noqa: BLE001 - read again batch by batch, where it is raised
                images = None
            if not (isinstance(images, np.ndarray) and images.ndim == 4):
                group = 1
                continue
            label_nd = _to_ndarray(labels, None) if labels_nd and _ndarray.available() else None
            start = 0
            for indices in batches[i:j]:
                stop = start + len(indices)
                rows = None if label_nd is None else _ndarray_rows(label_nd, start, stop)
                yield indices, (images[start:stop], labels[start:stop] if rows is None else rows,
                                encoded[start:stop])
                start = stop
            i = j

    def _assemble(self, indices, read, pool=None, into_ndarray=False):
        """:meth:`build` from what ``dataset.read_batch(indices)`` returned."""
        images, labels, encoded = read
        transform = self.transform
        if type(images) is np.ndarray and images.ndim == 4:
            # Raw records of one shape (never encoded): the common case, with the least work.
            if transform is None:
                return images, labels
            if into_ndarray:
                # Transformed straight into the batch's NDArray (no copy after).
                shape = (len(images),) + transform._out_shape(images.shape[1:])
                made = _new_cpu_ndarray(shape, np.float32)
                if made is not None:
                    transform.transform_batch(images, out=_ndarray_view(made[1], shape, np.float32), pool=pool)
                    return made[0], labels
            return transform.transform_batch(images, pool=pool), labels
        mode = self.dataset.decode
        if encoded.any() and mode and transform is not None:
            # Each image transformed as soon as it is decoded (None: the general path below).
            name = lambda i: self.dataset._what(self.dataset.key(indices[i]))
            out = self.transform._transform_encoded(images, encoded, mode, name, pool=pool)
            if out is not None:
                return out, labels
        if encoded.any() and mode:
            todo = np.flatnonzero(encoded).tolist()
            what = self.dataset._what
            keys = [self.dataset.key(indices[i]) for i in todo]
            decoded = _map_chunked(pool, lambda j: decode_image(images[todo[j]], mode, what(keys[j])),
                                   range(len(todo)))
            images = list(images)
            for i, img in zip(todo, decoded):
                images[i] = img
            encoded = None
        if transform is not None:
            return transform.transform_batch(images, encoded, pool=pool), labels
        if isinstance(images, np.ndarray):
            return images, labels
        shapes = {(img.shape, img.dtype) for img in images}
        if len(shapes) > 1 or encoded is not None and encoded.any():
            raise CaffeShapeError("records of one batch differ in shape or type (%s): give a "
                                  "CaffeTransform with crop_size, or batch_size 1"
                                  % ", ".join(sorted("%s %s" % (s, d) for s, d in shapes)))
        return np.stack(images), labels

    def _output(self, batch):
        if self.as_numpy:
            return batch
        data, label = batch
        if isinstance(data, np.ndarray):
            data = _to_ndarray(data, self.ctx)
        return data, label if not isinstance(label, np.ndarray) else _to_ndarray(label, self.ctx)

    def _direct(self):
        """Whether batches may be built straight into CPU NDArrays."""
        import mxnet as mx
        return not self.as_numpy and (self.ctx is None or self.ctx == mx.cpu())

    def __iter__(self):
        batches = self._epoch()
        if self.num_workers == 0:
            direct = self._direct()
            for indices, read in self._reads(batches, labels_nd=direct):
                yield self._output(self._assemble(indices, read, into_ndarray=direct))
            return
        yield from self._threaded(batches)

    def _threaded(self, batches):
        results = queue.Queue(self.prefetch)
        stop = threading.Event()
        pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="gluon_caffe_decode")
        direct = self._direct()

        def produce():
            try:
                for indices, read in self._reads(batches):
                    item = self._assemble(indices, read, pool, into_ndarray=direct)
                    while not stop.is_set():
                        try:
                            results.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                item = _DONE
            except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
                item = e
            while not stop.is_set():
                try:
                    results.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        producer = threading.Thread(target=produce, name="gluon_caffe_batches", daemon=True)
        producer.start()
        try:
            while True:
                item = results.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield self._output(item)
        finally:
            stop.set()
            producer.join()
            pool.shutdown(wait=True)

    def __repr__(self):
        return "<CaffeBatchLoader over %r: batch %d, %d batches, %d workers>" % (
            self.dataset, self.batch_size, len(self), self.num_workers)


# ---------------------------------------------------------------------------------------------
# Gluon DataLoader integration: a one-copy batchify and a DataLoader with the right defaults
# ---------------------------------------------------------------------------------------------
def _in_worker_process():
    """Whether this is a process worker of ``gluon.data.DataLoader`` (its batches are pickled to
    the parent through shared memory)."""
    try:
        from mxnet.gluon.data import dataloader
    except ImportError:  # pragma: no cover
        return False
    return getattr(dataloader, "_worker_dataset", None) is not None


def _stack_to_ndarray(arrays):
    """Stack equal-shaped numpy arrays into one new NDArray with a single copy."""
    import mxnet as mx
    shape, dtype = arrays[0].shape, arrays[0].dtype
    if any(a.shape != shape for a in arrays):
        raise CaffeShapeError("batchify: the samples of one batch differ in shape (%s); give the "
                              "CaffeTransform a crop_size, or use batch_size 1"
                              % ", ".join(sorted({str(a.shape) for a in arrays})))
    if any(a.dtype != dtype for a in arrays):
        dtype = np.result_type(*arrays)
    full = (len(arrays),) + shape
    nbytes = int(np.prod(full, dtype=np.int64)) * dtype.itemsize
    shared = _in_worker_process()
    if shared and nbytes >= _shm.MIN_BYTES:
        # A large batch in a worker process: into one of the worker's reusable shared segments
        # (it becomes an NDArray over the same memory when the parent unpickles it).
        batch = _shm.ring_batch(arrays, dtype)
        if batch is not None:
            return batch
    if nbytes and (shared or nbytes < _COPY_BELOW):
        # Straight into the NDArray's memory (cpu_shared in a worker process: what MXNet pickles
        # to the parent without another copy).
        made = _new_cpu_ndarray(full, dtype, shared)
        if made is not None:
            np.stack(arrays, out=_ndarray_view(made[1], full, dtype))
            return made[0]
    if not nbytes:
        return mx.nd.array(np.zeros(full, dtype), dtype=dtype,
                           ctx=mx.Context("cpu_shared", 0) if shared else None)
    return _to_ndarray(np.stack(arrays).astype(dtype, copy=False), None)


def batchify(data):
    """Collate samples into NDArray batches with one copy: a ``batchify_fn`` for Gluon's DataLoader.

    What ``gluon.data.DataLoader``'s default batchify does, cheaper for numpy samples (what
    :class:`CaffeLMDBDataset` and :class:`CaffeTransform` yield): each field is stacked once,
    straight into the memory of a new NDArray, with no engine round trip. The default copies
    every batch twice (``np.asarray``, then ``nd.array`` through MXNet's engine).

    In a worker process (``num_workers > 0`` without ``thread_pool``) a field of 1 MB or more is
    stacked into one of the worker's reusable shared-memory segments and becomes, in the parent,
    an NDArray over that memory (no copy): MXNet's own path allocates a new ``cpu_shared`` segment
    per batch, and first-touching tens of MB of fresh shared pages costs about as much as
    transforming the JPEGs. A segment is reused once the parent has dropped that batch (every
    NDArray and view of it); while the parent holds many batches, MXNet's path is used. Smaller
    fields go into a new ``cpu_shared`` NDArray, as MXNet's. There, the value returned before it is
    pickled to the parent is a handle, not an NDArray: wrap this function only to change the
    samples, not its result.

    Parameters
    ----------
    data : list
        The samples of one batch: numpy arrays or scalars, NDArrays (stacked as Gluon does), or
        tuples of those (each field is batched on its own, e.g. ``(image, label)``).

    Returns
    -------
    mxnet.nd.NDArray or list
        One NDArray, or a list with one per field for tuple samples (as Gluon's batchify).

    Raises
    ------
    CaffeShapeError
        The samples of one field differ in shape.

    Examples
    --------
    >>> loader = gluon.data.DataLoader(ds.transform_first(t), batch_size=64, num_workers=2,
    ...                                batchify_fn=gc.data.batchify)
    """
    if not len(data):
        raise ValueError("batchify: no samples")
    first = data[0]
    if isinstance(first, tuple):
        return [batchify(list(field)) for field in zip(*data)]
    import mxnet as mx
    if isinstance(first, mx.nd.NDArray):
        from mxnet.gluon.data import dataloader
        fn = dataloader.default_mp_batchify_fn if _in_worker_process() else dataloader.default_batchify_fn
        return fn(data)
    return _stack_to_ndarray([np.asarray(x) for x in data])


def _fast_source(dataset):
    """``(CaffeLMDBDataset, CaffeTransform or None)`` when :class:`CaffeBatchLoader` can build
    `dataset`'s batches, else ``(None, None)``."""
    from .dataset import CaffeLMDBDataset, _TransformFirstDataset
    from .transforms import CaffeTransform
    if isinstance(dataset, CaffeLMDBDataset):
        return dataset, None
    if (isinstance(dataset, _TransformFirstDataset) and isinstance(dataset.dataset, CaffeLMDBDataset)
            and isinstance(dataset.transform, CaffeTransform)):
        return dataset.dataset, dataset.transform
    return None, None


class DataLoader:
    """``gluon.data.DataLoader`` with the fastest path for Caffe data; the same arguments.

    Over a :class:`CaffeLMDBDataset`, or ``dataset.transform_first(CaffeTransform(...))``, with
    no ``sampler``, ``batch_sampler`` or ``batchify_fn``, batches are built a whole batch at a
    time by :class:`CaffeBatchLoader` (one read per batch, vectorised parse and transform), and
    ``num_workers`` are *threads* that decode and transform (OpenCV and numpy release the GIL),
    with batches built ahead in the background: no worker process, no pickling, no shared-memory
    copy. The batches equal ``gluon.data.DataLoader``'s for the same dataset (bit for bit without
    shuffle and with deterministic transforms; random crops, mirrors and shuffles are drawn from
    another generator). Any other dataset, or a custom sampler, goes to ``gluon.data.DataLoader``
    with :func:`batchify` as its default ``batchify_fn``.

    Parameters
    ----------
    dataset : Dataset
    batch_size : int
    shuffle : bool
    sampler, batch_sampler : gluon.data.Sampler, optional
        Gluon's; given, Gluon's DataLoader is used.
    last_batch : {'keep', 'discard', 'rollover'}, optional
        Default ``'keep'``.
    batchify_fn : callable, optional
        Given, Gluon's DataLoader is used with it; default :func:`batchify`.
    num_workers : int
        Decoding threads on the fast path; worker processes otherwise (Gluon's meaning).
    pin_memory : bool
        Batches in ``cpu_pinned(pin_device_id)`` memory.
    pin_device_id : int
    prefetch : int, optional
        Batches built ahead (fast path: default 2 when ``num_workers > 0``; Gluon's default
        otherwise).
    thread_pool, timeout, auto_reload
        Gluon's, for the Gluon path (ignored on the fast path, which uses threads and has no
        worker to time out).
    seed : int, optional
        Seeds the fast path's shuffle order.

    Attributes
    ----------
    fast : bool
        Whether the fast path builds the batches.
    loader : CaffeBatchLoader or gluon.data.DataLoader
        What iterates.

    Examples
    --------
    >>> ds = gc.data.CaffeLMDBDataset("train_lmdb")
    >>> t = gc.data.CaffeTransform('crop_size: 227 mirror: true mean_file: "mean.binaryproto"', "train")
    >>> for data, label in gc.data.DataLoader(ds.transform_first(t), batch_size=64, shuffle=True,
    ...                                       num_workers=2):
    ...     pass
    """

    def __init__(self, dataset, batch_size=None, shuffle=False, sampler=None, last_batch=None,
                 batch_sampler=None, batchify_fn=None, num_workers=0, pin_memory=False, pin_device_id=0,
                 prefetch=None, thread_pool=False, timeout=120, auto_reload=False, seed=None):
        base, transform = _fast_source(dataset)
        self.fast = base is not None and sampler is None and batch_sampler is None and batchify_fn is None
        if self.fast:
            if batch_size is None:
                raise ValueError("batch_size must be specified unless batch_sampler is specified")
            ctx = None
            if pin_memory:
                import mxnet as mx
                ctx = mx.cpu_pinned(pin_device_id)
            self.loader = CaffeBatchLoader(base, batch_size, transform, shuffle=shuffle,
                                           last_batch=last_batch or "keep", num_workers=num_workers,
                                           prefetch=prefetch, ctx=ctx, seed=seed)
        else:
            import mxnet as mx
            self.loader = mx.gluon.data.DataLoader(
                dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, last_batch=last_batch,
                batch_sampler=batch_sampler, batchify_fn=batchify_fn or batchify, num_workers=num_workers,
                pin_memory=pin_memory, pin_device_id=pin_device_id, prefetch=prefetch,
                thread_pool=thread_pool, timeout=timeout, auto_reload=auto_reload)

    def __iter__(self):
        return iter(self.loader)

    def __len__(self):
        return len(self.loader)

    def __repr__(self):
        return "<gluon_caffe.data.DataLoader (%s): %r>" % ("fast path" if self.fast else "Gluon", self.loader)
