"""CaffeTransform: Caffe's transform_param (DataTransformer) as a Gluon transform, in Caffe's exact order."""

import ctypes
import math
import os
import threading
import weakref

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from ..errors import CaffeIOError, CaffeProtoError, CaffeShapeError
from ..proto import caffe_pb2
from . import _shm
from .datum import _cv2, decode_image

__all__ = ["CaffeTransform", "load_mean_file"]


def _parse_transform_param(param):
    if isinstance(param, caffe_pb2.TransformationParameter):
        out = caffe_pb2.TransformationParameter()
        out.CopyFrom(param)
        return out
    if param is None:
        return caffe_pb2.TransformationParameter()
    if isinstance(param, bytes):
        param = param.decode("utf-8")
    if not isinstance(param, str):
        raise TypeError("transform_param must be prototxt text or a TransformationParameter, got %s"
                        % type(param).__name__)
    msg = caffe_pb2.TransformationParameter()
    try:
        text_format.Parse(param, msg)
        return msg
    except text_format.ParseError as first:
        # Also accept the field as it appears in a layer: "transform_param { ... }".
        layer = caffe_pb2.LayerParameter()
        try:
            text_format.Parse(param, layer)
        except text_format.ParseError:
            raise CaffeProtoError("transform_param: %s" % first) from None
        return layer.transform_param


def load_mean_file(path):
    """Read a mean ``.binaryproto`` (a BlobProto) as a float32 CHW array.

    Raises
    ------
    CaffeIOError
        The file is missing or unreadable.
    CaffeProtoError
        It is not a BlobProto, or its data does not fill its shape.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CaffeIOError("mean_file %r: %s" % (path, e.strerror)) from None
    blob = caffe_pb2.BlobProto()
    try:
        blob.ParseFromString(raw)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise CaffeProtoError("mean_file %r is not a BlobProto: %s" % (path, e)) from None
    if blob.HasField("shape"):
        shape = tuple(blob.shape.dim)
    else:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    values = blob.data if len(blob.data) else blob.double_data
    if not shape or int(np.prod(shape)) != len(values) or len(values) == 0:
        raise CaffeProtoError("mean_file %r: shape %r does not match its %d values"
                              % (path, shape, len(values)))
    mean = np.array(values, dtype=np.float32)
    # Caffe indexes the mean as one CHW image whatever its leading axes say.
    if len(shape) >= 3:
        return mean.reshape(shape[-3:]) if int(np.prod(shape[:-3])) == 1 else mean.reshape(-1, *shape[-2:])
    return mean.reshape((1,) * (3 - len(shape)) + shape)


_POOL_MIN = 256 << 10     # bytes: smaller arrays come from malloc, whose pages stay warm
_POOL_LIMIT = 128 << 20   # bytes of free blocks a process keeps for reuse
_CAST_FIRST = 4096        # elements: larger uint8 images are cast to float32 before the arithmetic


class _BufferPool:
    """Memory for transformed images and batches, reused once every array over it is gone.

    A new array of a few hundred kB or more gets fresh pages from the kernel (glibc maps it, or
    trims the heap after it is freed), and first touching them costs more than the transform
    itself: about 0.25 ms for one 227x227 colour crop, 16 ms for a batch of 64. Here each array
    is made over a new ctypes view of a block (the object that the array and every view of it
    keep alive), whose finalizer returns the block when the last of them is gone (a batch handed
    to MXNet without a copy: when the NDArray is freed). At most `limit` bytes of free blocks are
    kept; a forked process gets its own pool (its copies of the parent's arrays return there).

    Parameters
    ----------
    limit : int
        Bytes of free blocks kept.
    """

    def __init__(self, limit=_POOL_LIMIT):
        self.limit = limit
        self._free = {}       # nbytes -> [block, ...], the sizes in order of last use
        self._bytes = 0
        self._lock = threading.RLock()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self):
        self._lock = threading.RLock()

    def empty(self, shape, dtype=np.float32):
        """A new uninitialised C-contiguous array of `shape` and `dtype` (``np.empty``)."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < _POOL_MIN:
            return np.empty(shape, dtype)
        block = None
        with self._lock:
            free = self._free.pop(nbytes, None)
            if free:
                block = free.pop()
                self._bytes -= nbytes
                self._free[nbytes] = free   # now the most recently used size
        if block is None:
            block = np.empty(nbytes, np.uint8)
        holder = (ctypes.c_char * nbytes).from_buffer(block)
        weakref.finalize(holder, self._put, block).atexit = False
        return np.frombuffer(holder, dtype).reshape(shape)

    def _put(self, block):
        nbytes = block.nbytes
        if nbytes > self.limit:
            return
        with self._lock:
            # Over the limit: drop the free blocks of the sizes least recently used first.
            while self._bytes + nbytes > self.limit and self._free:
                size = next(iter(self._free))
                free = self._free[size]
                free.pop()
                self._bytes -= size
                if not free:
                    del self._free[size]
            if self._bytes + nbytes <= self.limit:
                self._free.setdefault(nbytes, []).append(block)
                self._bytes += nbytes


_POOL = _BufferPool()


def _map_chunked(pool, fn, items):
    """``[fn(x) for x in items]``, in `pool`'s threads when given: one task per thread, each a
    contiguous run of items (a future per image costs more than a small image's work)."""
    items = list(items)
    if pool is None or len(items) < 2:
        return [fn(x) for x in items]
    workers = max(1, getattr(pool, "_max_workers", 2))
    size = -(-len(items) // workers)
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    out = []
    for part in pool.map(lambda chunk: [fn(x) for x in chunk], chunks):
        out.extend(part)
    return out


class CaffeTransform:
    """Caffe's ``transform_param`` applied to one image, exactly as Caffe's DataTransformer does.

    The order is Caffe's: decode an encoded image (``force_color``/``force_gray``), draw the
    mirror coin (with ``mirror: true``), then the crop offsets (random in TRAIN, centred in
    TEST), subtract ``mean_file`` (indexed on the uncropped image) or ``mean_value`` (one, or
    one per channel), multiply by ``scale``, mirror. Arithmetic is float32 as in Caffe, so deterministic settings (TEST,
    no mirror) give Caffe's output bit for bit.

    Parameters
    ----------
    transform_param : str or caffe_pb2.TransformationParameter, optional
        Prototxt text of the fields (``'crop_size: 227 mirror: true mean_file: "m.binaryproto"'``,
        or ``'transform_param { ... }'``) or the message.
    phase : {'test', 'train'}
        TRAIN draws crop offsets at random, TEST crops the centre. ``mirror: true`` flips at
        random in both phases, as Caffe does.
    seed : int, optional
        Seeds the random draws. A forked worker (``DataLoader(num_workers>0)``) reseeds
        from ``(seed, pid)`` so that workers do not repeat each other.

    Examples
    --------
    >>> ds = CaffeLMDBDataset("train_lmdb")
    >>> t = CaffeTransform('crop_size: 227 mirror: true mean_file: "mean.binaryproto"', "train")
    >>> loader = gluon.data.DataLoader(ds.transform_first(t), batch_size=64, num_workers=2)

    Notes
    -----
    Input is what :class:`CaffeLMDBDataset` yields: a CHW (or HW) uint8 or float array, or the
    1-D bytes of an encoded image (from ``CaffeLMDBDataset(decode=False)``), which is decoded here
    as Caffe decodes it. Output is a float32 CHW numpy array. Caffe's random draws come from
    its own RNG, so random crops and mirrors match Caffe in distribution, not draw for draw.
    """

    def __init__(self, transform_param=None, phase="test", seed=None):
        self.param = _parse_transform_param(transform_param)
        phase = str(phase).lower()
        if phase not in ("test", "train"):
            raise ValueError("phase must be 'train' or 'test', got %r" % (phase,))
        self.phase = phase
        p = self.param
        if p.force_color and p.force_gray:
            raise CaffeProtoError("transform_param: cannot set both force_color and force_gray")
        if p.HasField("mean_file") and len(p.mean_value):
            raise CaffeProtoError("transform_param: cannot specify mean_file and mean_value at the same time")
        self.scale = np.float32(p.scale)
        self.crop_size = int(p.crop_size)
        self.mirror = bool(p.mirror)
        self.mean = load_mean_file(p.mean_file) if p.HasField("mean_file") else None
        self.mean_values = np.array(p.mean_value, dtype=np.float32) if len(p.mean_value) else None
        self.decode_mode = "color" if p.force_color else "gray" if p.force_gray else "native"
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._pid = os.getpid()

    @property
    def rng(self):
        """The generator of the random draws; a forked process gets its own stream."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            entropy = [self.seed, self._pid] if self.seed is not None else None
            self._rng = np.random.default_rng(np.random.SeedSequence(entropy))
        return self._rng

    def _as_chw(self, data):
        if hasattr(data, "asnumpy"):
            data = data.asnumpy()
        if isinstance(data, (bytes, bytearray, memoryview)):
            return decode_image(bytes(data), self.decode_mode)
        img = np.asarray(data)
        if img.ndim == 1:
            return decode_image(img, self.decode_mode)
        if img.ndim == 2:
            img = img[None]
        if img.ndim != 3:
            raise CaffeShapeError("CaffeTransform takes one CHW image, got shape %r" % (img.shape,))
        if (self.param.force_gray and img.shape[0] != 1) or (self.param.force_color and img.shape[0] != 3):
            raise CaffeShapeError(
                "force_%s needs the encoded image: this one is already decoded with %d channels "
                "(build the dataset with decode=False so the transform decodes as Caffe does)"
                % ("gray" if self.param.force_gray else "color", img.shape[0]))
        return img

    def _check(self, shape):
        """Caffe's CHECKs on one input shape (once per distinct shape)."""
        channels, height, width = shape
        crop = self.crop_size
        if crop > height or crop > width:
            raise CaffeShapeError("transform_param: crop_size %d is larger than the %dx%d image"
                                  % (crop, height, width))
        if self.mean is not None and self.mean.shape != tuple(shape):
            raise CaffeShapeError("transform_param: mean_file %r has shape %r, the image %r"
                                  % (self.param.mean_file, self.mean.shape, tuple(shape)))
        if self.mean_values is not None and len(self.mean_values) not in (1, channels):
            raise CaffeShapeError("transform_param: specify either 1 mean_value or as many as "
                                  "channels (%d), got %d" % (channels, len(self.mean_values)))

    def _draw(self, shape):
        """The random draws for one image, in Caffe's order: the mirror coin (in either phase:
        DataTransformer does not look at the phase for mirror), then the crop offsets (random
        only in TRAIN). Returns ``(h_off, w_off, do_mirror)``."""
        _, height, width = shape
        crop = self.crop_size
        do_mirror = self.mirror and bool(self.rng.integers(2))
        if not crop:
            return 0, 0, do_mirror
        if self.phase == "train":
            h_off = int(self.rng.integers(height - crop + 1))
            w_off = int(self.rng.integers(width - crop + 1))
            return h_off, w_off, do_mirror
        return (height - crop) // 2, (width - crop) // 2, do_mirror

    def _out_shape(self, shape):
        crop = self.crop_size
        return (shape[0], crop, crop) if crop else tuple(shape)

    def _apply(self, img, out, h_off, w_off, do_mirror):
        """Write the transformed `img` (CHW, or NCHW sharing one draw) into float32 `out`.

        Element by element this is Caffe's arithmetic in float32: ``(pixel - mean) * scale``,
        the mean read at the uncropped, unmirrored position, the result stored mirrored.
        """
        crop = self.crop_size
        if crop:
            img = img[..., h_off:h_off + crop, w_off:w_off + crop]
        if (img.ndim == 3 and img.shape[0] > 1 and img.dtype == np.uint8 and img.strides[0] == 1
                and out.flags.c_contiguous):
            # A CHW view of an OpenCV (HWC) decode: reading it channel-first strides through
            # memory. Split it into contiguous planes (OpenCV, no GIL) and do each plane.
            planes = _cv2().split(img.transpose(1, 2, 0))
            for c, plane in enumerate(planes):
                self._apply_plane(plane, c, out[c], h_off, w_off, do_mirror)
            if self.scale != 1:
                np.multiply(out, self.scale, out=out)
            return out
        if do_mirror:
            img = img[..., ::-1]
        mean = None
        if self.mean is not None:
            mean = self.mean[:, h_off:h_off + img.shape[-2], w_off:w_off + img.shape[-1]]
            mean = mean[..., ::-1] if do_mirror else mean
        elif self.mean_values is not None:
            mean = self.mean_values.reshape(-1, 1, 1) if len(self.mean_values) > 1 else self.mean_values[0]
        if img.dtype == np.uint8 and img.size >= _CAST_FIRST and not (do_mirror and self.mean is not None):
            # The pixels cast to float32 first (exact), then each step in place: a ufunc mixing
            # uint8 and float32 buffers the cast, and on a batch or a large image is up to three
            # times slower than the cast and a float32 ufunc. The same float32 arithmetic.
            np.copyto(out, img)
            img = out
        if mean is not None:
            np.subtract(img, mean, out=out, dtype=np.float32)
        elif self.scale != 1:
            # One pass (in place when cast first): the uint8 -> float32 cast is exact, so this
            # is Caffe's x * scale.
            return np.multiply(img, self.scale, out=out, dtype=np.float32)
        elif img is not out:
            out[...] = img
        if self.scale != 1:
            np.multiply(out, self.scale, out=out)
        return out

    def _mean_mirrored(self):
        mirrored = getattr(self, "_mirrored_mean", None)
        if mirrored is None:
            mirrored = self._mirrored_mean = np.ascontiguousarray(self.mean[:, :, ::-1])
        return mirrored

    def _apply_plane(self, plane, c, out, h_off, w_off, do_mirror):
        """(plane - mean of channel `c`) into `out`, mirrored as asked (scale comes after)."""
        if self.mean is not None:
            # OpenCV: uint8 - float32 into float32 converts the pixel (exactly) and subtracts in
            # float32, as numpy does, several times faster. The mirrored image takes the mirrored
            # mean, kept as a contiguous copy so that its crop is a plain OpenCV view.
            cv2 = _cv2()
            h, w = plane.shape
            if do_mirror:
                plane = cv2.flip(plane, 1)
                width = self.mean.shape[2]
                mean = self._mean_mirrored()[c, h_off:h_off + h, width - w_off - w:width - w_off]
            else:
                mean = self.mean[c, h_off:h_off + h, w_off:w_off + w]
            res = cv2.subtract(plane, mean, dst=out, dtype=cv2.CV_32F)
            if res.ctypes.data != out.ctypes.data:   # OpenCV allocated instead of writing in place
                out[...] = res
            return
        if do_mirror:
            plane = plane[:, ::-1]
        if self.mean_values is not None:
            mean = self.mean_values[c] if len(self.mean_values) > 1 else self.mean_values[0]
            np.subtract(plane, mean, out=out, dtype=np.float32)
        else:
            out[...] = plane

    def __call__(self, data, *rest):
        """Transform one image; extra arguments (the label) pass through, for ``Dataset.transform``."""
        img = self._as_chw(data)
        self._check(img.shape)
        h_off, w_off, do_mirror = self._draw(img.shape)
        shape = self._out_shape(img.shape)
        if math.prod(shape) * 4 < _shm.MIN_SAMPLE_BYTES:
            out = np.empty(shape, np.float32)
        else:
            # In a DataLoader worker batching with gc.data.batchify: straight into the batch's
            # segment; else memory that earlier samples have given back.
            out = _shm.sample_array(shape)
            if out is None:
                out = _POOL.empty(shape)
        out = self._apply(img, out, h_off, w_off, do_mirror)
        return (out,) + rest if rest else out

    def _decode_all(self, images, encoded, pool):
        images = list(images)
        todo = [i for i in range(len(images)) if encoded is None and np.ndim(images[i]) == 1
                or encoded is not None and encoded[i]]
        if todo:
            decode = lambda i: decode_image(images[i], self.decode_mode, "record %d of the batch" % i)
            for i, img in zip(todo, _map_chunked(pool, decode, todo)):
                images[i] = img
        return [self._as_chw(img) for img in images]

    def _transform_encoded(self, images, encoded, mode, what, out=None, pool=None):
        """Decode and transform a batch holding encoded images, image by image, in one pass.

        Each image is transformed as soon as it is decoded and its draw is known (the draws
        are made in record order, under a lock, as soon as the shapes of all earlier images
        are known), so that a decoded image is dropped while still in cache, and the threads of
        `pool` take images one at a time (no barrier between decoding and transforming).

        Parameters
        ----------
        images : sequence
            One entry per image: the 1-D bytes of an encoded image, or a decoded CHW (or HW)
            array.
        encoded : sequence of bool
            Which entries are encoded.
        mode : {'native', 'color', 'gray'}
            How the encoded entries are decoded (see :func:`decode_image`).
        what : callable
            ``what(i)`` names entry `i` in errors.
        out : numpy.ndarray, optional
            float32 ``(N, C, h, w)`` array to write into.
        pool : concurrent.futures.Executor, optional
            Its threads decode and transform.

        Returns
        -------
        numpy.ndarray or None
            float32 ``(N, C, h, w)``; ``None`` when the batch needs the general path (images
            that transform to different shapes, a failed check or decode: that path raises the
            error), with the random generator put back as it was.
        """
        n = len(images)
        if not n:
            return None
        rng = self.rng
        state = rng.bit_generator.state
        lock = threading.Lock()
        shapes, decoded, draws = [None] * n, [None] * n, [None] * n
        box = {"out": out, "frontier": 0, "failed": False, "checked": set()}
        order = iter(range(n))

        def prepare(i):
            img = images[i]
            if encoded[i]:
                img = decode_image(img, mode, what(i))
            return self._as_chw(img)

        def advance():
            """Draw for the images whose predecessors' shapes are known (call with the lock)."""
            ready = []
            k = box["frontier"]
            while k < n and shapes[k] is not None:
                shape = shapes[k]
                if shape not in box["checked"]:
                    self._check(shape)
                    want = (n,) + self._out_shape(shape)
                    if box["out"] is None:
                        box["out"] = _POOL.empty(want)
                    if box["out"].shape != want or box["out"].dtype != np.float32:
                        raise CaffeShapeError("images of the batch transform to different shapes")
                    box["checked"].add(shape)
                draws[k] = self._draw(shape)
                ready.append((k, decoded[k]))
                decoded[k] = None
                k += 1
            box["frontier"] = k
            return ready

        def work():
            try:
                for i in order:
                    if box["failed"]:
                        return
                    img = prepare(i)
                    with lock:
                        shapes[i], decoded[i] = img.shape, img
                        ready = advance()
                    dst = box["out"]
                    for k, ready_img in ready:
                        self._apply(ready_img, dst[k], *draws[k])
            except Exception:  # noqa: BLE001 - the general path raises it again, in order
                box["failed"] = True

        workers = max(1, getattr(pool, "_max_workers", 1)) if pool is not None else 0
        if workers:
            for f in [pool.submit(work) for _ in range(min(workers, n))]:
                f.result()
        else:
            work()
        if box["failed"]:
            rng.bit_generator.state = state
            return None
        return box["out"]

    def transform_batch(self, images, encoded=None, out=None, pool=None):
        """Transform a whole batch; equal to calling the transform on each image in turn.

        The random draws are made image by image in the same order as :meth:`__call__` makes
        them, so with the same seed the batch equals ``np.stack([t(img) for img in images])``
        exactly. Deterministic settings on a ``(N, C, H, W)`` array are one numpy operation.

        Parameters
        ----------
        images : numpy.ndarray or sequence
            ``(N, C, H, W)`` uint8/float array, or one entry per image: a CHW (or HW) array, or
            the 1-D bytes of an encoded image (decoded here, as Caffe decodes, with
            ``force_color``/``force_gray``), as :func:`parse_datum_batch` returns them.
        encoded : sequence of bool, optional
            Which entries are encoded bytes (default: the 1-D ones).
        out : numpy.ndarray, optional
            float32 ``(N, C, h, w)`` array to write into.
        pool : concurrent.futures.Executor, optional
            Decodes and transforms images in its threads (OpenCV's decoder and numpy release
            the GIL). The draws are still made in record order, one thread at a time.

        Returns
        -------
        numpy.ndarray
            float32 ``(N, C, h, w)``.

        Raises
        ------
        CaffeShapeError
            The transformed images differ in shape (no ``crop_size`` over images of different
            sizes), or Caffe's own checks fail (crop larger than an image, mean shape).
        """
        if hasattr(images, "asnumpy"):
            images = images.asnumpy()
        stacked = isinstance(images, np.ndarray) and images.ndim == 4
        if not stacked:
            images = list(images)
            flags = [np.ndim(img) == 1 for img in images] if encoded is None else list(map(bool, encoded))
            if any(flags):
                done = self._transform_encoded(images, flags, self.decode_mode,
                                               lambda i: "record %d of the batch" % i, out, pool)
                if done is not None:
                    return done
            images = self._decode_all(images, encoded, pool)
        n = len(images)
        shapes = [images.shape[1:]] * n if stacked else [img.shape for img in images]
        distinct = {images.shape[1:]} if stacked else set(shapes)
        for shape in distinct:
            self._check(shape)
        out_shapes = {self._out_shape(s) for s in distinct}
        if len(out_shapes) > 1:
            raise CaffeShapeError("transform_param: the batch's images transform to different shapes %s; "
                                  "set crop_size or use images of one size" % sorted(out_shapes))
        out_shape = (n,) + (out_shapes.pop() if n else (0, 0, 0))
        if out is None:
            out = _POOL.empty(out_shape)
        elif out.shape != out_shape or out.dtype != np.float32:
            raise CaffeShapeError("transform_batch: out must be float32 %r, got %s %r"
                                  % (out_shape, out.dtype, out.shape))
        random = self.mirror or (self.crop_size and self.phase == "train")
        if stacked and not random:
            return self._apply(images, out, *self._draw(shapes[0])) if n else out
        draws = [self._draw(shape) for shape in shapes]
        _map_chunked(pool, lambda i: self._apply(images[i], out[i], *draws[i]), range(n))
        return out

    def __repr__(self):
        fields = text_format.MessageToString(self.param, as_one_line=True)
        return "CaffeTransform(%r, phase=%r)" % (fields, self.phase)
