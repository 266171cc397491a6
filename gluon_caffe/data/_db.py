"""Read-only access to Caffe's LMDB and LevelDB databases, opened lazily in each process."""

import itertools
import os
import shutil
import tempfile
import threading
import weakref

import numpy as np

from ..errors import CaffeError, CaffeIOError

__all__ = ["open_reader", "check_backend", "KeyTable", "LevelDBSnapshot"]

BACKENDS = ("lmdb", "leveldb")


def check_backend(path, backend):
    """Normalise `backend` and check that `path` is a database of that kind.

    Raises
    ------
    CaffeIOError
        The path is missing or holds the other kind of database (or none).
    """
    if not isinstance(backend, str) or backend.lower() not in BACKENDS:
        raise ValueError("backend must be 'lmdb' or 'leveldb', got %r" % (backend,))
    backend = backend.lower()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CaffeIOError("%s database %r does not exist" % (backend.upper(), path))
    is_lmdb = os.path.isfile(os.path.join(path, "data.mdb")) or (
        os.path.isfile(path) and not os.path.isdir(path))
    is_leveldb = os.path.isfile(os.path.join(path, "CURRENT"))
    if backend == "lmdb" and not is_lmdb:
        hint = " (it looks like a LevelDB: pass backend='leveldb')" if is_leveldb else ""
        raise CaffeIOError("%r is not an LMDB database: no data.mdb%s" % (path, hint))
    if backend == "leveldb" and not is_leveldb:
        hint = " (it looks like an LMDB: pass backend='lmdb')" if is_lmdb else ""
        raise CaffeIOError("%r is not a LevelDB database: no CURRENT file%s" % (path, hint))
    return backend


class KeyTable:
    """An immutable list of byte keys in two numpy arrays.

    A Python list of 100k ``bytes`` would be copied page by page into every forked DataLoader
    worker as reference counts are touched; two flat arrays stay shared.
    """

    def __init__(self, keys):
        keys = list(keys)
        self._offsets = np.zeros(len(keys) + 1, dtype=np.int64)
        np.cumsum([len(k) for k in keys], out=self._offsets[1:])
        self._blob = np.frombuffer(b"".join(keys), dtype=np.uint8) if keys else np.zeros(0, np.uint8)

    def __len__(self):
        return len(self._offsets) - 1

    def __getitem__(self, i):
        return self._blob[self._offsets[i]:self._offsets[i + 1]].tobytes()

    def select(self, indices):
        """A new table with the keys at `indices`, in that order."""
        return KeyTable(self[int(i)] for i in indices)


def _lmdb():
    import lmdb
    return lmdb


# One environment per database per process: LMDB (and py-lmdb's guard) forbid opening the same
# environment twice in a process. Entries remember their pid; a forked child closes what it
# inherited (harmless with lock=False: no lock file, no fcntl locks) and opens its own.
_ENVS = {}
_ENV_LOCK = threading.Lock()


def _new_lock_after_fork():
    # A thread of the parent (a CaffeBatchLoader's) may hold the lock at fork time.
    global _ENV_LOCK
    _ENV_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)

# LMDB maps the whole file: every page a pass reads stays mapped, and counts in the process's
# RSS (as file pages), until the environment is closed. Readers count the bytes they read and
# close the environment, between transactions, once this many have been read, so that a pass
# over a database larger than memory keeps a flat RSS. Reopening costs well under a millisecond.
REMAP_BYTES = 8 << 20


class _ProcessEnv:
    """This process's open environment for one database, with its readers' bookkeeping."""

    __slots__ = ("pid", "env", "mapped", "active")

    def __init__(self, env):
        self.pid, self.env, self.mapped, self.active = os.getpid(), env, 0, 0


def _open_lmdb(path):
    lmdb = _lmdb()
    try:
        # readonly + lock=False: nothing is written, no lock file is used, and no state is
        # shared with other processes; no spare read transaction is cached across calls.
        return lmdb.open(path, readonly=True, lock=False, max_spare_txns=0, readahead=False,
                         subdir=os.path.isdir(path))
    except lmdb.Error as e:
        raise CaffeIOError("cannot open LMDB %r: %s" % (path, e)) from None


def _process_entry(path, create=True, key=None):
    """The entry for `path` in this process (opened when `create`); call with _ENV_LOCK held.
    `key` is ``os.path.realpath(path)`` when the caller knows it (it costs four syscalls)."""
    key = key or os.path.realpath(path)
    entry = _ENVS.get(key)
    if entry is not None and entry.pid == os.getpid():
        return entry
    if entry is not None:
        _ENVS.pop(key, None)
        try:
            entry.env.close()
        except Exception:  # noqa: BLE001 - the parent's handle is unusable here anyway
            pass
    if not create:
        return None
    entry = _ProcessEnv(_open_lmdb(path))
    _ENVS[key] = entry
    return entry


def _process_env(path, create=True):
    with _ENV_LOCK:
        entry = _process_entry(path, create)
    return None if entry is None else entry.env


class _ReadTxn:
    """A read transaction on this process's environment that counts the bytes read, and closes
    the environment after it when :data:`REMAP_BYTES` have been read and no other is open."""

    __slots__ = ("path", "key", "entry", "txn", "nbytes", "buffers")

    def __init__(self, path, key, buffers=False):
        self.path, self.key = path, key
        self.nbytes = 0
        self.buffers = buffers   # values as views of the map, valid only inside the transaction

    def __enter__(self):
        with _ENV_LOCK:
            self.entry = _process_entry(self.path, key=self.key)
            self.entry.active += 1
        try:
            self.txn = self.entry.env.begin(buffers=self.buffers)
        except BaseException:
            self._release()
            raise
        return self

    def _release(self):
        with _ENV_LOCK:
            entry = self.entry
            entry.active -= 1
            entry.mapped += self.nbytes
            if entry.mapped > REMAP_BYTES and entry.active == 0:
                if _ENVS.get(self.key) is entry:
                    del _ENVS[self.key]
                entry.env.close()

    def __exit__(self, *exc):
        try:
            self.txn.abort()
        finally:
            self._release()
        return False


class _TemporaryEnv:
    """This process's environment if it has one, else one opened for the block and closed after,
    so that building a dataset leaves nothing open for a later fork to inherit."""

    def __init__(self, path):
        self.path = path
        self.env = self.opened = self.entry = None

    def __enter__(self):
        with _ENV_LOCK:
            self.entry = _process_entry(self.path, create=False)
            if self.entry is not None:
                self.entry.active += 1   # not closed under us by a reader's remap
                self.env = self.entry.env
        if self.env is None:
            self.env = self.opened = _open_lmdb(self.path)
        return self.env

    def __exit__(self, *exc):
        if self.opened is not None:
            self.opened.close()
        if self.entry is not None:
            with _ENV_LOCK:
                self.entry.active -= 1
        return False


# A run of consecutive records read with a cursor touches its leaf pages one node at a time, each
# a dependent cache miss (a few per record: about half of a small batch's read). Touching the map
# ahead of the cursor, one load per cache line, all independent, costs a fraction of that.
TOUCH_BYTES = 1 << 20     # bytes: longer runs are not touched (the cache would not hold them)
_LINE = 64


class _MapLines:
    """A strided numpy view of `count` cache lines of LMDB's map from `address` (one byte each)."""

    __slots__ = ("__array_interface__",)

    def __init__(self, address, count):
        self.__array_interface__ = {"data": (address, True), "shape": (count,), "strides": (_LINE,),
                                    "typestr": "|u1", "version": 3}


def _address(view):
    return np.frombuffer(view, np.uint8).__array_interface__["data"][0]


def _touch_run(txn, first, key_len, count):
    """Load one byte of each cache line where a run of `count` records from `first` (the view of
    its first value) most likely lies: from the start of `first`'s page on, about as many pages
    as the records take (their estimated size). A hint only: the run is then read as usual.

    Only bytes between `first`'s page and the end of the database's last record are read: both
    are in the transaction's snapshot, so every byte between them lies in the mapped file (LMDB
    maps the file as one region, and a read-only transaction's values are views of that map).
    Nothing is read when the last record lies before `first` (a database not written in order),
    or when either value is empty (its view need not point into the map).
    """
    size = len(first)
    if not size:
        return
    node = size + key_len + 10   # a leaf node: header, key, value, and its slot in the page
    if node <= 2000:             # in the leaf page (LMDB moves larger values to overflow pages)
        span = (-(-count // max(1, 4080 // node)) + 1) * 4096
    else:
        span = count * (-(-(size + 16) // 4096) * 4096 + 64) + 4096
    if span > TOUCH_BYTES:
        return
    last = txn.cursor()
    if not last.last():
        return
    end = last.value()
    if not len(end):
        return
    start = _address(first) & ~4095
    span = min(span, _address(end) + len(end) - start)
    if span >= 2 * _LINE:
        np.asarray(_MapLines(start, span // _LINE)).max()


class LMDBReader:
    """Reads an LMDB without ever writing to it; the environment is opened per process.

    Parameters
    ----------
    path : str
        The database directory (or file, for ``subdir=False`` databases).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._key = os.path.realpath(self.path)

    @property
    def env(self):
        return _process_env(self.path)

    def count(self):
        """Number of records, from LMDB's own statistics (no scan)."""
        with _TemporaryEnv(self.path) as env:
            return env.stat()["entries"]

    def keys(self):
        """All keys in the database's (sorted) order."""
        with _TemporaryEnv(self.path) as env, env.begin() as txn:
            return KeyTable(txn.cursor().iternext(keys=True, values=False))

    def get(self, key):
        with _ReadTxn(self.path, self._key) as r:
            value = r.txn.get(key)
            if value is not None:
                r.nbytes = len(value)
        if value is None:
            raise CaffeIOError("LMDB %r has no record %r (was the database changed?)" % (self.path, key))
        return value

    def get_many(self, keys):
        """The values of `keys`, in that order, read in one transaction."""
        with _ReadTxn(self.path, self._key) as r:
            get = r.txn.get
            values = [get(k) for k in keys]
            if None in values:
                missing = keys[values.index(None)]
                raise CaffeIOError("LMDB %r has no record %r (was the database changed?)"
                                   % (self.path, missing))
            r.nbytes = sum(map(len, values))
        return values

    def get_run(self, first_key, count):
        """`count` consecutive values from `first_key` on, with one cursor in one transaction."""
        with _ReadTxn(self.path, self._key) as r:
            values = self._run(r, first_key, count)
            r.nbytes = sum(map(len, values))
        return values

    def _run(self, r, first_key, count, touch=False):
        """`count` values from `first_key` on in the open transaction `r` (views if it has buffers;
        `touch`, with buffers: their pages brought into the cache first, see :func:`_touch_run`)."""
        cursor = r.txn.cursor()
        if not cursor.set_key(first_key):
            raise CaffeIOError("LMDB %r has no record %r (was the database changed?)" % (self.path, first_key))
        if touch and count > 1:
            _touch_run(r.txn, cursor.value(), len(first_key), count)
        values = list(itertools.islice(cursor.iternext(keys=False, values=True), count))
        if len(values) != count:
            raise CaffeIOError("LMDB %r ends %d records after %r, expected %d (was the database "
                               "changed?)" % (self.path, len(values), first_key, count))
        return values

    def get_run_joined(self, first_key, count):
        """:meth:`get_run` as one ``bytes`` (the values one after the other) and their lengths:
        the values are read as views of the map and copied once, straight into the result. A
        short run's pages are first brought into the CPU's cache (:func:`_touch_run`)."""
        with _ReadTxn(self.path, self._key, buffers=True) as r:
            views = self._run(r, first_key, count, touch=True)
            lengths = list(map(len, views))
            blob = b"".join(views)
            del views   # no view may outlive the transaction
            r.nbytes = len(blob)
        return blob, lengths

    def items(self):
        """Iterate ``(key, value)`` in order (one read transaction)."""
        with _TemporaryEnv(self.path) as env, env.begin() as txn:
            for key, value in txn.cursor():
                yield key, value

    def close(self):
        """Close this process's environment for the database (reopened on the next read)."""
        with _ENV_LOCK:
            entry = _ENVS.get(os.path.realpath(self.path))
            if entry is not None and entry.pid == os.getpid() and entry.active == 0:
                del _ENVS[os.path.realpath(self.path)]
                entry.env.close()


def _plyvel():
    try:
        import plyvel
    except ImportError as e:  # pragma: no cover - the test environment has it
        raise CaffeError("LevelDB databases need the plyvel package: pip install plyvel==1.5.1 (%s)"
                         % e) from None
    return plyvel


_SNAPSHOT_PREFIX = "gluon_caffe_leveldb_"


def _remove_tree(path, owner_pid):
    # A forked child inherits the parent's snapshot objects; only the creator removes the files.
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)


def _sweep_stale_snapshots():
    """Remove snapshots left by processes that died without cleaning up (a DataLoader worker is
    terminated with SIGTERM, so its finalizers never run)."""
    root = tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if not name.startswith(_SNAPSHOT_PREFIX):
            continue
        try:
            pid = int(name[len(_SNAPSHOT_PREFIX):].split("_", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        except (ValueError, PermissionError):
            pass


class LevelDBSnapshot:
    """A private copy of a LevelDB that this process may open.

    LevelDB allows one process at a time (it locks ``LOCK``) and writes even when only read: it
    replays its log into a new table and writes a new MANIFEST on every open. So readers never
    open the user's database: each process opens a snapshot directory whose table files are hard
    links (LevelDB never modifies a table file, it only deletes its own links) and whose small
    files (log, manifest, CURRENT) are copies. The snapshot is removed when this object goes.
    """

    def __init__(self, path):
        self.source = os.fspath(path)
        _sweep_stale_snapshots()
        self.path = tempfile.mkdtemp(prefix="%s%d_" % (_SNAPSHOT_PREFIX, os.getpid()))
        self._finalizer = weakref.finalize(self, _remove_tree, self.path, os.getpid())
        try:
            for name in os.listdir(self.source):
                src = os.path.join(self.source, name)
                if name == "LOCK" or name.startswith("LOG") or not os.path.isfile(src):
                    continue
                dst = os.path.join(self.path, name)
                if name.endswith((".ldb", ".sst")):
                    try:
                        os.link(src, dst)
                        continue
                    except OSError:
                        pass  # another filesystem: copy instead
                shutil.copyfile(src, dst)
        except OSError as e:
            self._finalizer()
            raise CaffeIOError("cannot read LevelDB %r: %s" % (self.source, e)) from None

    def remove(self):
        self._finalizer()


class LevelDBReader:
    """Reads a LevelDB through a per-process :class:`LevelDBSnapshot` (never the original)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._db = None
        self._snapshot = None
        self._pid = None

    def _open_db(self):
        plyvel = _plyvel()
        snapshot = LevelDBSnapshot(self.path)
        try:
            db = plyvel.DB(snapshot.path, create_if_missing=False)
        except plyvel.Error as e:
            snapshot.remove()
            raise CaffeIOError("cannot open LevelDB %r: %s" % (self.path, e)) from None
        return db, snapshot

    @property
    def db(self):
        if self._db is None or self._pid != os.getpid():
            self._db, self._snapshot = self._open_db()
            self._pid = os.getpid()
        return self._db

    def count(self):
        return len(self.keys())

    def keys(self):
        db, snapshot = self._open_db()
        try:
            return KeyTable(db.iterator(include_value=False))
        finally:
            db.close()
            snapshot.remove()

    def get(self, key):
        value = self.db.get(key)
        if value is None:
            raise CaffeIOError("LevelDB %r has no record %r (was the database changed?)" % (self.path, key))
        return value

    def get_many(self, keys):
        """The values of `keys`, in that order."""
        return [self.get(k) for k in keys]

    def get_run(self, first_key, count):
        """`count` consecutive values from `first_key` on."""
        values = list(itertools.islice(self.db.iterator(start=first_key, include_key=False), count))
        if len(values) != count:
            raise CaffeIOError("LevelDB %r ends %d records after %r, expected %d (was the database "
                               "changed?)" % (self.path, len(values), first_key, count))
        return values

    def get_run_joined(self, first_key, count):
        """:meth:`get_run` as one ``bytes`` and the values' lengths."""
        values = self.get_run(first_key, count)
        return b"".join(values), list(map(len, values))

    def items(self):
        db, snapshot = self._open_db()
        try:
            for key, value in db.iterator():
                yield key, value
        finally:
            db.close()
            snapshot.remove()

    def close(self):
        if self._db is not None and self._pid == os.getpid():
            self._db.close()
            self._snapshot.remove()
        self._db = self._snapshot = None

    def __getstate__(self):
        return {"path": self.path, "_db": None, "_snapshot": None, "_pid": None}


def open_reader(path, backend="lmdb"):
    """A lazy, read-only reader for the database at `path` (checked to be of kind `backend`)."""
    backend = check_backend(path, backend)
    return LMDBReader(path) if backend == "lmdb" else LevelDBReader(path)
