"""Reusable shared-memory batch buffers from Gluon DataLoader worker processes to the parent.

MXNet hands an NDArray batch from a worker to the parent through a fresh ``cpu_shared`` segment per
batch; writing a large batch (40 MB for 64 JPEGs cropped to 227) into brand-new shared pages costs
about as much as transforming the images. Here each worker keeps a few segments (``memfd``) and
reuses them: the parent maps a segment once (its file descriptor crosses once, as MXNet's do) and
wraps the batch as an NDArray without a copy (DLPack). A one-byte flag in the segment's header says
whether the parent still holds the batch: the parent clears it when the NDArray (and every view of
it) is gone, and only then does the worker write into the segment again.
"""

import mmap
import os
import threading
import weakref

import numpy as np

__all__ = ["ring_batch"]

_HEADER = 64           # bytes before the data: [0] busy (1 while the parent holds the batch), [1] attached
_MAX_SEGMENTS = 8      # per worker; beyond that (batches held for long) MXNet's own path is used
MIN_BYTES = 1 << 20    # smaller batches go through MXNet's path (the first-touch cost is small)


class _Segment:
    __slots__ = ("seg_id", "fd", "size", "map", "sent_fd")

    def __init__(self, seg_id, size):
        self.seg_id, self.size = seg_id, size
        self.fd = os.memfd_create("gluon_caffe_batch_%d" % seg_id, os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)
        self.sent_fd = False


class _Ring:
    """This worker process's segments."""

    def __init__(self):
        self.pid = os.getpid()
        self.segments = []
        self.next_id = 0

    def take(self, nbytes):
        need = _HEADER + nbytes
        for seg in self.segments:
            if seg.size >= need and seg.map[0] == 0:
                return seg
        if len(self.segments) >= _MAX_SEGMENTS:
            # Drop a free segment too small for this batch, if any, else give up. (The parent
            # keeps its mapping of a dropped segment until this worker exits: batch sizes seldom
            # grow, so this happens a few times at most.)
            small = [s for s in self.segments if s.map[0] == 0]
            if not small:
                return None
            self._drop(small[0])
        seg = _Segment(self.next_id, -(-need // mmap.PAGESIZE) * mmap.PAGESIZE)
        self.next_id += 1
        self.segments.append(seg)
        return seg

    def _drop(self, seg):
        self.segments.remove(seg)
        seg.map.close()
        os.close(seg.fd)


_RING = None
_LOCK = threading.Lock()


def _new_lock_after_fork():
    global _LOCK
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


def _ring():
    global _RING
    if _RING is None or _RING.pid != os.getpid():
        _RING = _Ring()
    return _RING


class RingBatch:
    """A batch written into a worker's segment; pickling it (ForkingPickler, in the worker) gives
    the parent an NDArray over the same memory."""

    __slots__ = ("segment", "shape", "dtype", "pid")

    def __init__(self, segment, shape, dtype):
        self.segment, self.shape, self.dtype, self.pid = segment, shape, np.dtype(dtype), os.getpid()

    def view(self):
        count = int(np.prod(self.shape, dtype=np.int64))
        return np.frombuffer(self.segment.map, self.dtype, count, _HEADER).reshape(self.shape)


def ring_batch(arrays, dtype):
    """Stack `arrays` into a reusable segment of this worker; ``None`` when none is free."""
    shape = (len(arrays),) + arrays[0].shape
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    with _LOCK:
        seg = _ring().take(nbytes)
        if seg is None:
            return None
        seg.map[0] = 1
    batch = RingBatch(seg, shape, dtype)
    try:
        np.stack(arrays, out=batch.view())
    except BaseException:
        seg.map[0] = 0
        raise
    return batch


def _reduce(batch):
    from multiprocessing.reduction import DupFd
    seg = batch.segment
    fd = None
    if not seg.map[1]:   # the parent has not mapped it yet: send the descriptor (again)
        fd = DupFd(seg.fd)
    return _rebuild, (batch.pid, seg.seg_id, seg.size, fd, batch.shape, batch.dtype.str)


# ------------------------------------------------------------------------------ the parent
_MAPS = {}   # (worker pid, segment id) -> mmap


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


def _release(mapped):
    try:
        mapped[0] = 0
    except ValueError:  # pragma: no cover - closed
        pass


def _rebuild(pid, seg_id, size, fd, shape, dtype):
    import mxnet as mx
    key = (pid, seg_id)
    with _LOCK:
        mapped = _MAPS.get(key)
        if fd is not None:
            fd = fd.detach()
            try:
                if mapped is None or len(mapped) != size:
                    mapped = mmap.mmap(fd, size)
                    if len(_MAPS) > 4 * _MAX_SEGMENTS:
                        for k in [k for k in _MAPS if not _alive(k[0])]:
                            del _MAPS[k]   # views still alive keep their mapping
                    _MAPS[key] = mapped
            finally:
                os.close(fd)
        if mapped is None:  # pragma: no cover - the descriptor never came
            raise RuntimeError("gluon_caffe: batch segment %r of worker %d is unknown" % (seg_id, pid))
        mapped[1] = 1
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    view = np.frombuffer(mapped, dtype, count, _HEADER).reshape(shape)
    weakref.finalize(view, _release, mapped)
    return mx.nd.from_numpy(view, zero_copy=True)


def _register():
    from multiprocessing.reduction import ForkingPickler
    ForkingPickler.register(RingBatch, _reduce)


_register()
