"""Where a prototxt may be a file path or the text itself, this decides which it is and reads it."""

import os

from .errors import CaffeIOError

__all__ = ["read_prototxt"]


def _looks_like_text(s):
    return "{" in s or "\n" in s or ":" in s.split("/")[-1] and not os.path.exists(s)


def read_prototxt(prototxt):
    """Return ``(text, origin)`` for a prototxt given as a path or as text.

    ``origin`` names the file for error messages (``"<prototxt text>"`` for text).
    """
    if isinstance(prototxt, bytes):
        prototxt = prototxt.decode("utf-8")
    if isinstance(prototxt, os.PathLike):
        prototxt = os.fspath(prototxt)
    if not isinstance(prototxt, str):
        raise TypeError("prototxt must be a path or the prototxt text, got %s" % type(prototxt).__name__)
    if _looks_like_text(prototxt):
        return prototxt, "<prototxt text>"
    try:
        with open(prototxt, "r", encoding="utf-8") as f:
            return f.read(), prototxt
    except FileNotFoundError:
        raise CaffeIOError("prototxt file %r does not exist" % prototxt) from None
    except UnicodeDecodeError as e:
        raise CaffeIOError("prototxt file %r is not UTF-8 text: %s" % (prototxt, e)) from None
    except OSError as e:
        raise CaffeIOError("cannot read prototxt file %r: %s" % (prototxt, e.strerror)) from None
