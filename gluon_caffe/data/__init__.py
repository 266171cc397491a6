"""gluon_caffe.data: Caffe data in Gluon — Datum databases, Caffe's data layers and transform_param."""

from .dataset import CaffeDataset, CaffeLMDBDataset
from .datum import (array_to_datum, datum_layout, datum_to_array, decode_image, encode_image, parse_datum,
                    parse_datum_batch)
from .loader import CaffeBatchLoader, DataLoader, batchify
from .transforms import CaffeTransform, load_mean_file
from .writer import make_lmdb, make_lmdb_main, read_list_file, write_lmdb

__all__ = [
    "CaffeDataset", "CaffeLMDBDataset", "CaffeBatchLoader", "DataLoader", "batchify", "CaffeTransform",
    "write_lmdb", "make_lmdb", "make_lmdb_main", "read_list_file", "load_mean_file", "array_to_datum",
    "datum_to_array", "parse_datum", "parse_datum_batch", "datum_layout", "decode_image", "encode_image",
]
