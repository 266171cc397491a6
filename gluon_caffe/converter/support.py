"""Which Caffe layer types the converter maps natively, runs through real Caffe, or drops."""

from .registry import DATA_TYPES, DROPPED_TYPES, registered_types

__all__ = ["support_table", "SUPPORT_KINDS"]

# kind -> what it means for a converted model
SUPPORT_KINDS = {
    "native": "translated to MXNet operators",
    "fallback": "run by real Caffe inside the graph (a CaffeLayer)",
    "input": "becomes an input variable",
    "dropped": "loss/metric layer, left out of inference graphs",
    "unsupported": "neither mapped nor compiled into libcaffe",
}


def support_table(caffe_types=None):
    """Rows ``(type, kind, in_libcaffe)`` for every layer type the converter or libcaffe knows.

    Parameters
    ----------
    caffe_types : iterable of str, optional
        The types compiled into libcaffe (``gluon_caffe.layer_types()``); None when unknown, in
        which case unmapped types count as fallback and ``in_libcaffe`` is None.
    """
    native = set(registered_types()) | {"Silence"}
    in_caffe = None if caffe_types is None else set(caffe_types)
    rows = []
    for t in sorted(native | set(DROPPED_TYPES) | set(DATA_TYPES) | {"Input"} | (in_caffe or set())):
        if t in native:
            kind = "native"
        elif t == "Input" or t in DATA_TYPES:
            kind = "input"
        elif t in DROPPED_TYPES:
            kind = "dropped"
        elif in_caffe is None or t in in_caffe:
            kind = "fallback"
        else:
            kind = "unsupported"
        rows.append((t, kind, None if in_caffe is None else t in in_caffe))
    return rows
