"""Writing output files all-or-nothing: temporary files beside the targets, renamed into place."""

import contextlib
import errno
import os
import secrets
import stat

__all__ = ["atomic_outputs"]


def _temporary_beside(path):
    """Create an empty temporary file next to ``path`` and return its name.

    Its mode is what writing ``path`` directly would give: the mode of the file it replaces, or
    0666 less the umask for a new one (``tempfile.mkstemp`` would make every output 0600).
    """
    directory = os.path.dirname(os.path.abspath(path))
    prefix = "." + os.path.basename(path) + "."
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = None
    for _ in range(100):
        tmp = os.path.join(directory, prefix + secrets.token_hex(4) + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            if mode is not None:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name beside %r" % path)


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
            temps.append(_temporary_beside(p))
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
