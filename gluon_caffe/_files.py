"""Writing output files all-or-nothing: temporary files beside the targets, renamed into place."""

import contextlib
import os
import tempfile

__all__ = ["atomic_outputs"]


@contextlib.contextmanager
def atomic_outputs(paths, overwrite, error):
    """Yield one temporary path per target in ``paths``; on success rename each into place.

    Nothing is left behind on failure, and an existing target is replaced only with ``overwrite``
    (checked again just before the rename). ``error`` is the exception class raised, with a message
    naming the path, for an existing target or an OS failure.
    """
    paths = [os.fspath(p) for p in paths]
    for p in paths:
        directory = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(directory):
            raise error("cannot write %r: directory %r does not exist" % (p, directory))
        if not overwrite and os.path.exists(p):
            raise error("output %r already exists (pass overwrite=True to replace it)" % p)
    temps = []
    try:
        for p in paths:
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(p)),
                                       prefix="." + os.path.basename(p) + ".", suffix=".tmp")
            os.close(fd)
            temps.append(tmp)
        yield list(temps)
        if not overwrite:
            for p in paths:
                if os.path.exists(p):
                    raise error("output %r already exists (pass overwrite=True to replace it)" % p)
        for tmp, p in zip(temps, paths):
            os.replace(tmp, p)
        temps = []
    except OSError as exc:
        raise error("cannot write %r: %s" % (paths[0], exc.strerror or exc)) from exc
    finally:
        for tmp in temps:
            try:
                os.unlink(tmp)
            except OSError:
                pass
