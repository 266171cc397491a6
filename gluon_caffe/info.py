"""caffe_info(): what libcaffe this gluon_caffe runs on, and how it was built."""

import copy

__all__ = ["caffe_info"]


def caffe_info():
    """Describe the libcaffe in use.

    Returns
    -------
    dict
        ``version``, ``commit`` (BVLC), ``debian_source``, ``patch_id``, ``patches``, ``flags`` (CPU_ONLY, USE_OPENCV,
        USE_LMDB, USE_LEVELDB), ``glog``, ``protobuf`` (libcaffe's C++ runtime), ``python_protobuf``,
        ``opencv``, ``prefix``, ``layer_types`` (the count compiled in) and ``log_level``.
    """
    from google.protobuf import __version__ as python_protobuf

    from ._build_info import BUILD_INFO
    from ._ext import _caffe

    info = copy.deepcopy(BUILD_INFO)
    # "caffe 1.0.0+git20180821.99bd997-8": upstream version, then the BVLC commit.
    upstream = info["debian_source"].split()[-1].split("-")[0]
    version, _, git = upstream.partition("+git")
    info.update(version=version, commit=git.partition(".")[2], protobuf=_caffe.protobuf_runtime_version(),
                python_protobuf=python_protobuf,
                layer_types=len(_caffe.layer_types()), log_level=_caffe.get_log_level())
    return info
