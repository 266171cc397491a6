"""Writing Caffe databases: numpy arrays or an image list file (convert_imageset's job) to LMDB/LevelDB."""

import argparse
import os
import random
import shutil
import sys

import numpy as np

from ..errors import CaffeError, CaffeIOError, CaffeShapeError
from ..proto import caffe_pb2
from .datum import _cv2, array_to_datum

__all__ = ["write_lmdb", "make_lmdb", "make_lmdb_main", "read_list_file"]

_COMMIT_EVERY = 1000  # records per write transaction, as convert_imageset commits
_LMDB_FILES = {"data.mdb", "lock.mdb"}


class _LMDBWriter:
    """Append-only LMDB writing whose map grows as needed (no 1 TB sparse map up front)."""

    def __init__(self, path):
        import lmdb
        self._lmdb = lmdb
        self._map_size = 64 << 20
        # lib_version=0: LMDB 0.9's data format, the one Caffe's liblmdb reads.
        self.env = lmdb.open(path, map_size=self._map_size, subdir=True, lock=True, lib_version=0)
        self._pending = []

    def put(self, key, value):
        self._pending.append((key, value))
        if len(self._pending) >= _COMMIT_EVERY:
            self.flush()

    def flush(self):
        while self._pending:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in self._pending:
                        txn.put(key, value)
                self._pending = []
            except self._lmdb.MapFullError:
                # The aborted transaction wrote nothing: grow the map and replay it.
                self._map_size *= 2
                self.env.set_mapsize(self._map_size)

    def close(self):
        self.flush()
        self.env.close()


class _LevelDBWriter:
    def __init__(self, path):
        from ._db import _plyvel
        self.db = _plyvel().DB(path, create_if_missing=True, error_if_exists=True)
        self._batch = self.db.write_batch()
        self._n = 0

    def put(self, key, value):
        self._batch.put(key, value)
        self._n += 1
        if self._n % _COMMIT_EVERY == 0:
            self._batch.write()
            self._batch = self.db.write_batch()

    def close(self):
        self._batch.write()
        self.db.close()


def _is_database_dir(path):
    names = set(os.listdir(path))
    return names <= _LMDB_FILES or "CURRENT" in names and all(
        n in ("CURRENT", "LOCK") or n.startswith(("LOG", "MANIFEST-")) or n.endswith((".log", ".ldb", ".sst"))
        for n in names)


class _AtomicDB:
    """Writes a database into a temporary sibling and renames it into place on success, so a
    reader never sees a half-written database and a failure leaves nothing behind."""

    def __init__(self, path, backend, overwrite):
        self.path = os.fspath(path)
        if backend not in ("lmdb", "leveldb"):
            raise ValueError("backend must be 'lmdb' or 'leveldb', got %r" % (backend,))
        if os.path.exists(self.path):
            if not overwrite:
                raise CaffeIOError("database %r already exists; pass overwrite=True to replace it"
                                   % self.path)
            if not os.path.isdir(self.path) or not _is_database_dir(self.path):
                raise CaffeIOError("refusing to overwrite %r: it is not an LMDB or LevelDB directory"
                                   % self.path)
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise CaffeIOError("cannot write %r: directory %r does not exist" % (self.path, parent))
        self.tmp = "%s.tmp-%d" % (os.path.abspath(self.path), os.getpid())
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.overwrite = overwrite
        self.writer = _LMDBWriter(self.tmp) if backend == "lmdb" else _LevelDBWriter(self.tmp)

    def __enter__(self):
        return self.writer

    def __exit__(self, exc_type, exc, tb):
        try:
            self.writer.close()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        if os.path.exists(self.path):
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return False


def write_lmdb(arrays, labels, path, *, encoded=None, overwrite=False, backend="lmdb", keys=None):
    """Write images and labels as Caffe Datum records that Caffe's Data layer reads.

    Parameters
    ----------
    arrays : numpy.ndarray or iterable of numpy.ndarray
        ``(N, C, H, W)`` or ``(N, H, W)`` array, or one CHW/HW array per record (sizes may
        differ). uint8 is stored as raw bytes (``data``), floating point as ``float_data``.
    labels : sequence of int
        One label per record.
    path : str or os.PathLike
        The database directory to create.
    encoded : {None, 'png', 'jpg'}, optional
        Store uint8 images encoded (``encoded: true``) in this format; PNG is lossless.
    overwrite : bool
        Replace an existing database at `path` (only a directory holding a database is ever
        removed). Without it an existing path is an error.
    backend : {'lmdb', 'leveldb'}
    keys : sequence of bytes or str, optional
        Record keys; default ``"%08d"`` of the index, so key order is record order.

    Returns
    -------
    int
        The number of records written.

    Raises
    ------
    CaffeIOError
        `path` exists (without `overwrite`) or cannot be written.
    CaffeShapeError
        A record cannot be a Datum, or arrays and labels differ in number.
    """
    labels = list(labels)
    if isinstance(arrays, np.ndarray) and arrays.ndim in (3, 4) and len(arrays) != len(labels):
        raise CaffeShapeError("%d arrays but %d labels" % (len(arrays), len(labels)))
    width = max(8, len(str(max(len(labels) - 1, 0))))
    n = 0
    with _AtomicDB(path, backend, overwrite) as db:
        for i, array in enumerate(arrays):
            if i >= len(labels):
                raise CaffeShapeError("more arrays than the %d labels" % len(labels))
            key = keys[i] if keys is not None else "%0*d" % (width, i)
            key = key.encode() if isinstance(key, str) else bytes(key)
            try:
                datum = array_to_datum(array, labels[i], encoded=encoded)
            except CaffeShapeError as e:
                raise CaffeShapeError("record %d: %s" % (i, e)) from None
            db.put(key, datum.SerializeToString())
            n = i + 1
        if n != len(labels):
            raise CaffeShapeError("%d arrays but %d labels" % (n, len(labels)))
    return n


def read_list_file(list_file):
    """Parse convert_imageset's list file: one ``path label`` per line; the label follows the
    last space, so paths may contain spaces. Blank lines are skipped.

    Returns
    -------
    list of (str, int)
    """
    try:
        with open(list_file, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise CaffeIOError("cannot read list file %r: %s" % (list_file, e.strerror)) from None
    out = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name, sep, label = line.rstrip().rpartition(" ")
        try:
            if not sep or not name:
                raise ValueError
            out.append((name, int(label)))
        except ValueError:
            raise CaffeIOError("list file %r line %d: expected 'path label', got %r"
                               % (list_file, lineno, line)) from None
    return out


def _read_image(filename, gray, resize_height, resize_width):
    """cv::imread + cv::resize as Caffe's ReadImageToCVMat does; uint8 CHW."""
    cv2 = _cv2()
    img = cv2.imread(filename, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if img is None:
        return None
    if resize_height > 0 and resize_width > 0:
        img = cv2.resize(img, (resize_width, resize_height))
    return img[None] if img.ndim == 2 else img.transpose(2, 0, 1)


def _extension(name):
    return os.path.splitext(name)[1][1:].lower()


def _same_encoding(ext, encoding):
    """Caffe's matchExt: the extension names the encoding (jpg and jpeg are one)."""
    jpeg = ("jpg", "jpeg")
    return ext == encoding or (ext in jpeg and encoding in jpeg)


def make_lmdb(root, list_file, path, *, gray=False, shuffle=False, seed=None, resize_height=0,
              resize_width=0, check_size=False, encoded=False, encode_type="", backend="lmdb",
              overwrite=False, progress=True):
    """Convert a list of images to a database of Datum, as Caffe's ``convert_imageset`` does.

    Parameters
    ----------
    root : str
        Folder the list's paths are relative to ("" for paths as given).
    list_file : str
        Lines of ``path label``.
    path : str
        The database to create.
    gray : bool
        Read images as one-channel grayscale.
    shuffle : bool
        Shuffle the lines first (with `seed`, reproducibly).
    resize_height, resize_width : int
        Resize every image (bilinear, OpenCV's default) when both are positive.
    check_size : bool
        Require every image to have the first image's size.
    encoded : bool
        Store encoded images: the file's own bytes when it already has `encode_type` (or
        `encode_type` is empty) and needs no resize or channel change, otherwise re-encoded.
    encode_type : str
        ``'png'``, ``'jpg'``... ("" keeps each file's format).
    backend : {'lmdb', 'leveldb'}
    overwrite : bool
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    int
        Records written.

    Raises
    ------
    CaffeIOError
        An image named in the list is missing or unreadable (its line and path are named).

    Notes
    -----
    Keys are ``"%08d_<path>"`` as convert_imageset writes them. Unlike convert_imageset, an
    unreadable image is an error rather than a skipped line.
    """
    entries = read_list_file(list_file)
    if shuffle:
        random.Random(seed).shuffle(entries)
    encode_type = encode_type.lower().lstrip(".")
    first_shape = None
    try:
        from tqdm import tqdm
        bar = tqdm(total=len(entries), disable=not progress, unit="img", desc="make-lmdb",
                   file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm is a requirement
        bar = None
    written = 0
    try:
        with _AtomicDB(path, backend, overwrite) as db:
            for line_id, (name, label) in enumerate(entries):
                filename = os.path.join(root, name) if root else name
                img = _read_image(filename, gray, resize_height, resize_width)
                if img is None:
                    what = "missing" if not os.path.exists(filename) else "not a readable image"
                    raise CaffeIOError("list file %r entry %d: image %r is %s"
                                       % (list_file, line_id, filename, what))
                if check_size:
                    if first_shape is None:
                        first_shape = img.shape
                    elif img.shape != first_shape:
                        raise CaffeShapeError("image %r has shape %r, the first had %r (check_size)"
                                              % (filename, img.shape, first_shape))
                if encoded:
                    enc = encode_type or _extension(name)
                    untouched = (img.shape[0] == 3) != gray and not (resize_height or resize_width)
                    if untouched and _same_encoding(_extension(name), enc):
                        # convert_imageset stores the file itself when no re-encoding is needed.
                        with open(filename, "rb") as f:
                            datum = caffe_pb2.Datum(data=f.read(), label=label, encoded=True)
                    else:
                        datum = array_to_datum(img, label, encoded=enc)
                else:
                    datum = array_to_datum(img, label)
                key = ("%08d_%s" % (line_id, name)).encode("utf-8")
                db.put(key, datum.SerializeToString())
                written += 1
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return written


def make_lmdb_main(argv=None):
    """``gluon-caffe make-lmdb``: the command-line face of :func:`make_lmdb`.

    Returns
    -------
    int
        The exit status (0 on success, 1 on a CaffeError, 2 on bad arguments).
    """
    parser = argparse.ArgumentParser(
        prog="gluon-caffe make-lmdb",
        description="Convert images listed as 'path label' lines into an LMDB (or LevelDB) of "
                    "Caffe Datum records, as Caffe's convert_imageset does.")
    parser.add_argument("root", help="folder the listed paths are relative to ('' for as given)")
    parser.add_argument("list_file", help="text file of 'path label' lines")
    parser.add_argument("db", help="database to create")
    parser.add_argument("--gray", action="store_true", help="read images as grayscale")
    parser.add_argument("--shuffle", action="store_true", help="shuffle the lines")
    parser.add_argument("--seed", type=int, default=None, help="seed for --shuffle")
    parser.add_argument("--resize", type=int, default=0, metavar="N",
                        help="resize to N x N (shorthand for both --resize-height/--resize-width)")
    parser.add_argument("--resize-height", type=int, default=0)
    parser.add_argument("--resize-width", type=int, default=0)
    parser.add_argument("--check-size", action="store_true", help="require equal image sizes")
    parser.add_argument("--encoded", action="store_true", help="store encoded images")
    parser.add_argument("--encode-type", default="", help="png, jpg... (default: the file's own)")
    parser.add_argument("--backend", default="lmdb", choices=["lmdb", "leveldb"])
    parser.add_argument("--overwrite", action="store_true", help="replace an existing database")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    height = args.resize_height or args.resize
    width = args.resize_width or args.resize
    try:
        n = make_lmdb(args.root, args.list_file, args.db, gray=args.gray, shuffle=args.shuffle,
                      seed=args.seed, resize_height=height, resize_width=width,
                      check_size=args.check_size, encoded=args.encoded,
                      encode_type=args.encode_type, backend=args.backend,
                      overwrite=args.overwrite, progress=not args.quiet)
    except CaffeError as e:
        print("gluon-caffe make-lmdb: error: %s" % e, file=sys.stderr)
        return 1
    if not args.quiet:
        print("wrote %d records to %s" % (n, args.db), file=sys.stderr)
    return 0
