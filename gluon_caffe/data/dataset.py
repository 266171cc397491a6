"""Gluon datasets over Caffe data: per-sample Datum records (CaffeLMDBDataset) and Caffe's own data layers (CaffeDataset)."""

import os

import numpy as np
from google.protobuf import text_format

from ..errors import CaffeError, CaffeIOError, CaffeProtoError, UnsupportedLayerError
from ..proto import caffe_pb2
from .._text import read_prototxt
from ._db import LevelDBSnapshot, check_backend, open_reader
from .datum import JoinedValues, datum_to_array, parse_datum, parse_datum_batch
from .writer import read_list_file

__all__ = ["CaffeLMDBDataset", "CaffeDataset"]

try:  # Gluon's Dataset gives transform/transform_first; keep the class usable without it.
    from mxnet.gluon.data import Dataset as _GluonDataset
except ImportError:  # pragma: no cover
    _GluonDataset = object


def _key_text(key):
    return key.decode("utf-8", "backslashreplace")


class CaffeLMDBDataset(_GluonDataset):
    """Per-sample Gluon Dataset over a Caffe LMDB or LevelDB of Datum records.

    ``dataset[i]`` is ``(image, label)``: the image as Caffe's DataTransformer sees it (uint8
    CHW for raw and decoded records, float32 CHW for ``float_data``; channels in Caffe's BGR
    order), the label an ``int32``. Records are in key order, as Caffe's Data layer reads them.

    Parameters
    ----------
    path : str or os.PathLike
        The database directory.
    backend : {'lmdb', 'leveldb'}
    num_parts, part_index : int
        Sharding for distributed training: this dataset holds records ``part_index``,
        ``part_index + num_parts``, ... (the records Caffe's multi-solver Data layer gives rank
        `part_index` of `num_parts`). The parts are disjoint and together cover the database.
    decode : {'native', 'color', 'gray', False}
        How encoded (JPEG/PNG) records are decoded: ``native`` keeps the file's channels
        (Caffe without ``force_*``); ``False`` yields the encoded bytes (1-D uint8) for
        :class:`CaffeTransform` to decode with its own ``force_color``/``force_gray``.

    Notes
    -----
    The database is opened lazily in each process, read-only and without a lock file
    (``readonly=True, lock=False``), so ``gluon.data.DataLoader(..., num_workers>0)`` can fork
    workers safely and nothing is ever written to the database. Keys are read once, at
    construction, into two flat numpy arrays that forked workers share. A LevelDB is read
    through a private per-process snapshot (hard links to its table files), because LevelDB
    admits one process at a time and writes to its directory on every open.

    For speed, read whole batches: :meth:`batches` (a :class:`CaffeBatchLoader`) reads each
    batch in one transaction, parses raw records for the whole batch with numpy, decodes JPEGs in
    threads and transforms into the batch array; its batches equal the per-sample path's.
    :class:`~gluon_caffe.data.DataLoader` takes Gluon's DataLoader arguments and uses it for this
    dataset and its ``transform_first(CaffeTransform(...))``.

    Examples
    --------
    >>> ds = CaffeLMDBDataset("mnist_train_lmdb")
    >>> t = CaffeTransform("scale: 0.00390625")
    >>> loader = gluon.data.DataLoader(ds.transform_first(t), batch_size=64, num_workers=2)
    >>> fast = ds.batches(64, t)   # the batches of DataLoader(ds.transform_first(t), 64), faster
    >>> fast = gc.data.DataLoader(ds.transform_first(t), batch_size=64, num_workers=2)   # the same
    """

    def __init__(self, path, backend="lmdb", num_parts=1, part_index=0, decode="native"):
        self.path = os.fspath(path)
        self.backend = check_backend(self.path, backend)
        if int(num_parts) < 1 or not 0 <= int(part_index) < int(num_parts):
            raise ValueError("need num_parts >= 1 and 0 <= part_index < num_parts, got %r, %r"
                             % (num_parts, part_index))
        if decode not in ("native", "color", "gray", False, None):
            raise ValueError("decode must be 'native', 'color', 'gray' or False, got %r" % (decode,))
        self.num_parts, self.part_index = int(num_parts), int(part_index)
        self.decode = decode or False
        self._reader = open_reader(self.path, self.backend)
        keys = self._reader.keys()
        if self.num_parts > 1:
            keys = keys.select(range(self.part_index, len(keys), self.num_parts))
        self._keys = keys

    def __len__(self):
        return len(self._keys)

    def key(self, idx):
        """The database key of record `idx`."""
        return self._keys[self._index(idx)]

    def _index(self, idx):
        n = len(self._keys)
        idx = int(idx)
        if idx < 0:
            idx += n
        if not 0 <= idx < n:
            raise IndexError("index %d out of range for %d records" % (idx, n))
        return idx

    def datum(self, idx):
        """The parsed ``caffe_pb2.Datum`` of record `idx`."""
        key = self._keys[self._index(idx)]
        return parse_datum(self._reader.get(key), self._what(key))

    def _what(self, key):
        return "record %r of %s %r" % (_key_text(key), self.backend.upper(), self.path)

    def __getitem__(self, idx):
        key = self._keys[self._index(idx)]
        what = self._what(key)
        datum = parse_datum(self._reader.get(key), what)
        return datum_to_array(datum, self.decode, what), np.int32(datum.label)

    def read_batch(self, indices):
        """Read and parse the records at `indices` together (one read transaction).

        Consecutive indices of an unsharded dataset are read with one cursor; raw records are
        parsed for the whole batch at once (:func:`~gluon_caffe.data.parse_datum_batch`).
        Encoded images are returned undecoded.

        Parameters
        ----------
        indices : sequence of int

        Returns
        -------
        images : numpy.ndarray or list
            ``(N, C, H, W)`` uint8 when all records are raw of one shape, else one entry per
            record (CHW array, or the 1-D encoded bytes).
        labels : numpy.ndarray
            int32.
        encoded : numpy.ndarray
            bool: which entries are encoded bytes.
        """
        n = len(self._keys)
        if isinstance(indices, range) and indices.step == 1 and 0 <= indices.start < indices.stop <= n \
                and self.num_parts == 1:   # the loader's sequential batches: one cursor, no numpy
            first = indices.start
            values = JoinedValues(*self._reader.get_run_joined(self._keys[first], len(indices)))
            return parse_datum_batch(values, lambda i: self._what(self._keys[first + i]))
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise IndexError("indices out of range for %d records" % n)
        idx = np.where(idx < 0, idx + n, idx)
        if (self.num_parts == 1 and len(idx) > 1 and idx[-1] - idx[0] == len(idx) - 1
                and (np.diff(idx) == 1).all()):
            values = self._reader.get_run(self._keys[int(idx[0])], len(idx))
        else:
            values = self._reader.get_many([self._keys[i] for i in idx.tolist()])
        return parse_datum_batch(values, lambda i: self._what(self._keys[int(idx[i])]))

    def batches(self, batch_size, transform=None, shuffle=False, last_batch="keep", num_workers=0, **kwargs):
        """The fast path: a :class:`~gluon_caffe.data.CaffeBatchLoader` over this dataset.

        Equal, batch for batch, to ``DataLoader(self.transform_first(transform), batch_size)``
        (same seed), several times faster: see :class:`CaffeBatchLoader` for the parameters.
        """
        from .loader import CaffeBatchLoader
        return CaffeBatchLoader(self, batch_size, transform, shuffle=shuffle, last_batch=last_batch,
                                num_workers=num_workers, **kwargs)

    def transform_first(self, fn, lazy=True):
        """Gluon's ``transform_first``: apply `fn` to the image of each ``(image, label)`` sample.

        Lazily (the default) the result is a dataset that :class:`~gluon_caffe.data.DataLoader`
        recognises: with a :class:`CaffeTransform` its batches are built a whole batch at a time.
        Samples are the same as Gluon's ``transform_first`` gives: ``(fn(image), label)``.
        """
        if not lazy:
            return super().transform_first(fn, lazy)
        return _TransformFirstDataset(self, fn)

    def close(self):
        """Close this process's handle (it reopens on the next access)."""
        self._reader.close()

    def __repr__(self):
        part = "" if self.num_parts == 1 else ", part %d of %d" % (self.part_index, self.num_parts)
        return "<CaffeLMDBDataset %r (%s): %d records%s>" % (self.path, self.backend, len(self), part)


class _TransformFirstDataset(_GluonDataset):
    """``CaffeLMDBDataset.transform_first(fn)``: ``(fn(image), label)`` samples, as Gluon's lazy
    transform_first, keeping the dataset and the transform visible to the DataLoader."""

    def __init__(self, dataset, fn):
        self.dataset, self.transform = dataset, fn

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, idx):
        image, label = self.dataset[idx]
        return self.transform(image), label

    def __repr__(self):
        return "<%r.transform_first(%r)>" % (self.dataset, self.transform)


# ---------------------------------------------------------------------------------------------
# CaffeDataset: batches from Caffe's own data layer
# ---------------------------------------------------------------------------------------------

_SUPPORTED = ("Data", "ImageData")
_LAST_BATCH = ("keep", "discard", "rollover")


def _parse_layers(text, origin):
    """The LayerParameters of a net prototxt, or the one layer a bare layer text describes."""
    net = caffe_pb2.NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as net_error:
        layer = caffe_pb2.LayerParameter()
        try:
            text_format.Parse(text, layer)
        except text_format.ParseError:
            raise CaffeProtoError("%s: %s" % (origin, net_error)) from None
        return [layer]
    if len(net.layers) and not len(net.layer):
        raise CaffeProtoError("%s uses V1 'layers' fields; upgrade it first (Caffe's "
                              "upgrade_net_proto_text) to use it with CaffeDataset" % origin)
    return list(net.layer)


def _in_phase(layer, phase):
    """Caffe's phase rule for include/exclude (stages and levels are not considered)."""
    want = caffe_pb2.TRAIN if phase == "train" else caffe_pb2.TEST
    if layer.HasField("phase") and layer.phase != want:
        return False
    if len(layer.include):
        return any(not r.HasField("phase") or r.phase == want for r in layer.include)
    return not any(r.HasField("phase") and r.phase == want for r in layer.exclude)


class CaffeDataset:
    """Batches from Caffe's own data layer (``Data`` on LMDB/LevelDB, or ``ImageData``).

    The layer runs inside libcaffe with Caffe's DataTransformer and prefetch thread, so its
    output is Caffe's bit for bit. Iterating yields ``(data, label)`` NDArray batches of
    ``data_param.batch_size`` (just ``data`` when the layer has one top).

    Parameters
    ----------
    prototxt : str or os.PathLike
        A net prototxt (path or text): its first data layer active in `phase` is used, so a
        ``train_val.prototxt`` works as is; or the text of one data layer.
    phase : {'train', 'test'}
    flat : bool
        Flatten each batch to ``(batch, C*H*W)``, as the old ``io.CaffeDataIter(flat=True)``.
    last_batch : {'keep', 'discard', 'rollover'}
        The last ``N % batch_size`` records of an epoch: ``keep`` yields them as a smaller batch;
        ``discard`` drops them; ``rollover`` starts the next epoch with them (Gluon's meanings).
    ctx : mxnet.Context, optional
        Where the batches go (default CPU).
    num_parts, part_index : int
        Sharding for distributed training, by Caffe's multi-GPU rule: this dataset yields records
        ``part_index``, ``part_index + num_parts``, ... of the source (what the Data layer of
        solver rank `part_index` of `num_parts` reads), in batches of ``batch_size``, the same
        records :class:`CaffeLMDBDataset` gives with the same arguments. Typically
        ``num_parts=kv.num_workers, part_index=kv.rank``. See the notes.

    Notes
    -----
    ``len()`` is the number of batches in one pass, from the database itself (LMDB's record
    count, the LevelDB's keys, the lines of an ImageData list). Each epoch visits every record
    once: Caffe's Data layer cycles through the database forever and prefetches ahead, so for
    ``keep`` and ``discard`` the layer is rebuilt at the start of an epoch whenever its cursor
    is not at the first record (the cost is opening the database and refilling the prefetch
    queue, milliseconds). ``rollover`` keeps one layer, whose endless cycle is exactly Gluon's
    rollover. A LevelDB is given to Caffe as a private snapshot so that nothing writes to it.

    Sharding (``num_parts > 1``): the bridge does not expose Caffe's solver rank and count
    (``Caffe::set_solver_rank``), which is what makes Caffe's own ``DataLayer::Skip`` drop the other
    ranks' records, so the rule is applied around the layer instead: the layer runs with
    ``batch_size * num_parts`` and every part keeps rows ``part_index::num_parts`` of each of its
    batches. Global batch ``i`` holds records ``i*B*N ... (i+1)*B*N - 1``, so those rows are
    exactly records ``part_index + N*(i*B + j)``, shard records ``i*B + j``: Caffe's rule, batch for
    batch, with Caffe's transform. The price is that each part reads and transforms the whole
    database (``num_parts`` times the work of one shard; use :class:`CaffeLMDBDataset` when that
    matters). ``len()`` counts this part's records, so when ``num_parts`` does not divide the record
    count the parts' lengths (and numbers of batches) can differ by one; a ``dist_sync`` job must
    make the same number of steps on every worker. ``rollover`` needs ``num_parts`` to divide the
    record count (otherwise the records would change parts from one epoch to the next).
    """

    def __init__(self, prototxt, phase="train", flat=False, last_batch="keep", ctx=None,
                 num_parts=1, part_index=0):
        text, origin = read_prototxt(prototxt)
        phase = str(phase).lower()
        if phase not in ("train", "test"):
            raise ValueError("phase must be 'train' or 'test', got %r" % (phase,))
        if last_batch not in _LAST_BATCH:
            raise ValueError("last_batch must be one of %s, got %r" % (_LAST_BATCH, last_batch))
        layers = [l for l in _parse_layers(text, origin) if _in_phase(l, phase)]
        data_layers = [l for l in layers if l.type in _SUPPORTED]
        if not data_layers:
            others = sorted({l.type for l in layers if l.type.endswith("Data")})
            raise UnsupportedLayerError(
                "%s has no %s layer for phase %s%s" % (
                    origin, " or ".join(_SUPPORTED), phase.upper(),
                    " (found %s, which CaffeDataset does not support)" % ", ".join(others) if others else ""))
        self.layer = caffe_pb2.LayerParameter()
        self.layer.CopyFrom(data_layers[0])
        del self.layer.include[:]
        del self.layer.exclude[:]
        self.phase, self.flat, self.last_batch = phase, bool(flat), last_batch
        self.ctx = ctx
        self._snapshot = None
        self.num_records, self.batch_size = self._inspect(origin)
        self._shard(num_parts, part_index)
        self._net = None
        self._delivered = 0   # records the live net has delivered since it was built
        self._carry = 0       # rollover: records of the last epoch not yet delivered

    def _inspect(self, origin):
        layer = self.layer
        what = "layer %r (%s)" % (layer.name, layer.type)
        if layer.type == "Data":
            p = layer.data_param
            source = p.source
            backend = "leveldb" if p.backend == caffe_pb2.DataParameter.LEVELDB else "lmdb"
            if not source:
                raise CaffeProtoError("%s: data_param.source is not set" % what)
            try:
                check_backend(source, backend)
            except CaffeIOError as e:
                raise CaffeIOError("%s: data_param.source: %s" % (what, e)) from None
            reader = open_reader(source, backend)
            count = reader.count()
            if count:
                first = reader.keys()[0] if backend == "leveldb" else self._first_key(reader)
                what_rec = "%s: record %r of %r" % (what, _key_text(first), source)
                datum = parse_datum(reader.get(first), what_rec)
                self._precheck(datum_to_array(datum, False, what_rec), what_rec)
                reader.close()
            if backend == "leveldb":
                # Caffe would write into the user's LevelDB (and lock it): give it a snapshot.
                self._snapshot = LevelDBSnapshot(source)
                p.source = self._snapshot.path
            batch_size = p.batch_size
        else:
            p = layer.image_data_param
            if not p.source:
                raise CaffeProtoError("%s: image_data_param.source is not set" % what)
            if p.rand_skip:
                raise CaffeProtoError("%s: image_data_param.rand_skip skips a random number of "
                                      "images, so epochs cannot be exact; remove it" % what)
            try:
                entries = read_list_file(p.source)
            except CaffeIOError as e:
                raise CaffeIOError("%s: image_data_param.source: %s" % (what, e)) from None
            count = len(entries)
            # ImageData CHECKs each image in its prefetch thread, where a failure cannot be
            # turned into an exception: find missing images here instead.
            for name, _ in entries:
                if not os.path.isfile(p.root_folder + name):
                    raise CaffeIOError("%s: image %r listed in %r is missing"
                                       % (what, p.root_folder + name, p.source))
            if entries:
                self._precheck(self._first_image(p, entries[0][0]), "%s: image %r" % (what, entries[0][0]))
            batch_size = p.batch_size
        if batch_size < 1:
            raise CaffeProtoError("%s: batch_size must be positive" % what)
        if count == 0:
            raise CaffeIOError("%s: the source holds no records" % what)
        return count, batch_size

    @staticmethod
    def _first_key(reader):
        with reader.env.begin() as txn:
            cursor = txn.cursor()
            cursor.first()
            return cursor.key()

    @staticmethod
    def _first_image(p, name):
        from .datum import _cv2
        cv2 = _cv2()
        img = cv2.imread(p.root_folder + name, cv2.IMREAD_COLOR if p.is_color else cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise CaffeIOError("image %r is not a readable image" % (p.root_folder + name))
        if p.new_height > 0 and p.new_width > 0:
            img = cv2.resize(img, (p.new_width, p.new_height))
        return img[None] if img.ndim == 2 else img.transpose(2, 0, 1)

    def _precheck(self, sample, what):
        """Run transform_param on the first record in Python. Caffe checks crop size, mean shape
        and mean_value count in its prefetch thread, where a failed CHECK aborts the process."""
        from .transforms import CaffeTransform
        try:
            CaffeTransform(self.layer.transform_param, self.phase)(sample)
        except CaffeError as e:
            raise type(e)("%s: %s" % (what, e)) from None

    # ------------------------------------------------------------------ the live net
    def _build(self):
        from ..caffenet import CaffeNet
        self._net = None  # the old layer's thread and database handle go first (LevelDB locks)
        net_text = 'name: "CaffeDataset" layer { %s }' % text_format.MessageToString(self.layer)
        self._net = CaffeNet(net_text, phase=self.phase)
        self._delivered = 0
        self._tops = list(self.layer.top)

    def _shard(self, num_parts, part_index):
        """Keep part `part_index` of `num_parts` (see the class notes): the layer reads batches of
        ``batch_size * num_parts`` and :meth:`_next_batch` keeps this part's rows."""
        num_parts, part_index = int(num_parts), int(part_index)
        if num_parts < 1 or not 0 <= part_index < num_parts:
            raise ValueError("need num_parts >= 1 and 0 <= part_index < num_parts, got %r, %r"
                             % (num_parts, part_index))
        self.num_parts, self.part_index = num_parts, part_index
        self._cycle = self.num_records      # records of one pass of the layer's own cursor
        if num_parts == 1:
            return
        what = "layer %r (%s)" % (self.layer.name, self.layer.type)
        if self.num_records < num_parts:
            raise ValueError("%s: %d records cannot be split into %d parts"
                             % (what, self.num_records, num_parts))
        if self.last_batch == "rollover" and self.num_records % num_parts:
            raise ValueError("%s: last_batch='rollover' with num_parts=%d needs a record count divisible "
                             "by it (the source has %d)" % (what, num_parts, self.num_records))
        p = self.layer.data_param if self.layer.type == "Data" else self.layer.image_data_param
        p.batch_size = self.batch_size * num_parts
        self.num_records = len(range(part_index, self.num_records, num_parts))

    def _next_batch(self):
        blobs = self._net.forward()
        self._delivered += self.batch_size * self.num_parts
        if self.num_parts > 1:
            return [blobs[t][self.part_index::self.num_parts] for t in self._tops]
        return [blobs[t] for t in self._tops]

    # ------------------------------------------------------------------ iteration
    def __len__(self):
        n, b = self.num_records, self.batch_size
        if self.last_batch == "keep":
            return -(-n // b)
        if self.last_batch == "discard":
            return n // b
        return (self._carry + n) // b

    def _to_nd(self, array, count):
        import mxnet as mx
        array = array[:count]
        if self.flat and array.ndim > 2:
            array = array.reshape(array.shape[0], -1)
        return mx.nd.array(array, ctx=self.ctx, dtype=array.dtype)

    def __iter__(self):
        n, b = self.num_records, self.batch_size
        if self.last_batch == "rollover":
            if self._net is None:
                self._build()
                self._carry = 0
            total = self._carry + n
            batches, sizes = total // b, None
        else:
            if self._net is None or self._delivered % self._cycle:
                self._build()
            batches = len(self)
            sizes = [b] * (n // b) + ([n % b] if self.last_batch == "keep" and n % b else [])
        finished = False
        try:
            for i in range(batches):
                count = sizes[i] if sizes else b
                blobs = self._next_batch()
                out = [self._to_nd(blob, count) for blob in blobs]
                yield tuple(out) if len(out) > 1 else out[0]
            finished = True
        finally:
            if self.last_batch == "rollover":
                if finished:
                    self._carry = total - batches * b
                else:
                    # An abandoned epoch leaves the stream mid-way: start the next one afresh.
                    self._net, self._carry = None, 0

    def reset(self):
        """Start the next epoch from the first record (drops a rollover carry)."""
        self._net, self._carry, self._delivered = None, 0, 0

    def __repr__(self):
        return "<CaffeDataset layer %r (%s), %s: %d records, batch %d, %d batches (%s)>" % (
            self.layer.name, self.layer.type, self.phase, self.num_records, self.batch_size,
            len(self), self.last_batch)
