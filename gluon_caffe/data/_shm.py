"""Reusable shared-memory batch buffers from Gluon DataLoader worker processes to the parent.

MXNet hands an NDArray batch from a worker to the parent through a fresh ``cpu_shared`` segment per
batch; writing a large batch (40 MB for 64 JPEGs cropped to 227) into brand-new shared pages costs
about as much as transforming the images. Here each worker keeps a few segments (``memfd``) and
reuses them: the parent maps a segment once (its file descriptor crosses once, as MXNet's do) and
wraps the batch as an NDArray without a copy (DLPack). A one-byte flag in the segment's header says
whether the parent still holds the batch: the parent clears it when the NDArray (and every view of
it) is gone, and only then does the worker write into the segment again.

A worker also lays out the samples of its next batch in one segment (an *arena*): once a batch of
``CaffeTransform`` outputs has gone through :func:`ring_batch`, the transform writes each sample of
the following batches straight into the next slot of an arena (:func:`sample_array`), and a batch
that is exactly the arena's samples, in order, is sent as it lies, without the stacking copy. A
segment is written again only when the parent has released it and no sample array over it is left
in the worker.
"""

import ctypes
import math
import mmap
import os
import threading
import weakref

import numpy as np

__all__ = ["ring_batch", "sample_array"]

_HEADER = 64           # bytes before the data: [0] busy (1 while the parent holds the batch), [1] attached
_MAX_SEGMENTS = 8      # per worker; beyond that (batches held for long) MXNet's own path is used
MIN_BYTES = 1 << 20    # smaller batches go through MXNet's path (the first-touch cost is small)
MIN_SAMPLE_BYTES = 64 << 10   # smaller samples are not laid out in an arena (stacking them is cheap)


class _Segment:
    __slots__ = ("seg_id", "fd", "size", "map", "sent_fd", "live", "address")

    def __init__(self, seg_id, size):
        self.seg_id, self.size = seg_id, size
        self.fd = os.memfd_create("gluon_caffe_batch_%d" % seg_id, os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)
        self.sent_fd = False
        self.live = 0   # holds in this worker: sample arrays over it, and the arena using it
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.map))


class _Arena:
    """The segment that the samples of this worker's next batch are written into, slot by slot."""

    __slots__ = ("segment", "slot_bytes", "capacity", "next")

    def __init__(self, segment, slot_bytes, capacity):
        self.segment, self.slot_bytes, self.capacity, self.next = segment, slot_bytes, capacity, 0


class _Ring:
    """This worker process's segments."""

    def __init__(self):
        self.pid = os.getpid()
        self.segments = []
        self.next_id = 0
        self.arena = None
        self.capacity = 0   # samples per arena: the size of the last batch that went through here

    def take(self, nbytes):
        need = _HEADER + nbytes
        for seg in self.segments:
            if seg.size >= need and seg.map[0] == 0 and seg.live == 0:
                return seg
        if len(self.segments) >= _MAX_SEGMENTS:
            # Drop a free segment too small for this batch, if any, else give up. (The parent
            # keeps its mapping of a dropped segment until this worker exits: batch sizes seldom
            # grow, so this happens a few times at most.)
            small = [s for s in self.segments if s.map[0] == 0 and s.live == 0]
            if not small:
                return None
            self._drop(small[0])
        seg = _Segment(self.next_id, -(-need // mmap.PAGESIZE) * mmap.PAGESIZE)
        self.next_id += 1
        self.segments.append(seg)
        return seg

    def _drop(self, seg):
        self.segments.remove(seg)
        try:
            seg.map.close()
        except BufferError:  # pragma: no cover - a dying sample's view not yet released
            pass
        os.close(seg.fd)

    def detach_arena(self):
        """Stop laying samples out in the current arena (its segment stays held by them)."""
        if self.arena is not None:
            self.arena.segment.live -= 1
            self.arena = None


_RING = None
_LOCK = threading.RLock()   # re-entrant: a sample array may die (its finalizer) under it


def _new_lock_after_fork():
    global _LOCK
    _LOCK = threading.RLock()


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


def _sample_gone(seg):
    with _LOCK:
        seg.live -= 1


def sample_array(shape, dtype=np.float32):
    """A new array for one sample in the next slot of this worker's arena, or ``None``.

    ``None`` (allocate elsewhere) until a batch of samples this large has gone through
    :func:`ring_batch` in this process (so only in a DataLoader worker with :func:`batchify`), or
    when no segment is free. The slot is written again only after the array, and every view of
    it, is gone (and the parent has released the batch it went into).
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_SAMPLE_BYTES:
        return None
    with _LOCK:
        ring = _ring()
        if ring.capacity < 2:
            return None
        arena = ring.arena
        if arena is not None and arena.slot_bytes != nbytes:
            return None   # another field of the sample: the arena keeps the batch's own
        if arena is None or arena.next >= arena.capacity:
            ring.detach_arena()
            seg = ring.take(ring.capacity * nbytes)
            if seg is None:
                return None
            seg.live += 1   # held by the arena until detached
            arena = ring.arena = _Arena(seg, nbytes, ring.capacity)
        slot = arena.next
        arena.next += 1
        seg = arena.segment
        seg.live += 1
    holder = (ctypes.c_char * nbytes).from_buffer(seg.map, _HEADER + slot * nbytes)
    weakref.finalize(holder, _sample_gone, seg).atexit = False
    return np.frombuffer(holder, dtype).reshape(shape)


def _adopt(arrays, dtype):
    """The arena's segment as the batch when `arrays` are its samples, slot by slot (call with
    the lock held); else ``None``."""
    ring = _ring()
    arena = ring.arena
    if arena is None or arena.next != len(arrays):
        return None
    first = arrays[0]
    if first.dtype != dtype or first.nbytes != arena.slot_bytes:
        return None
    start = arena.segment.address + _HEADER
    for j, a in enumerate(arrays):
        if (a.shape != first.shape or a.dtype != dtype or not a.flags.c_contiguous
                or a.__array_interface__["data"][0] != start + j * arena.slot_bytes):
            return None
    seg = arena.segment
    seg.map[0] = 1
    ring.detach_arena()
    for a in arrays:   # the parent reads them from now on
        a.flags.writeable = False
    return RingBatch(seg, (len(arrays),) + first.shape, dtype)


def ring_batch(arrays, dtype):
    """`arrays` as a batch in a reusable segment of this worker: the arena's segment as it is
    when they are its samples in order (no copy), else stacked into a free segment; ``None`` when
    none is free."""
    shape = (len(arrays),) + arrays[0].shape
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    with _LOCK:
        ring = _ring()
        batch = _adopt(arrays, dtype)
        if batch is not None:
            return batch
        # Not the arena's samples: lay the next batches' samples out in arenas of this size.
        ring.detach_arena()
        ring.capacity = len(arrays)
        seg = ring.take(nbytes)
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
