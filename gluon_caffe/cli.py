"""The `gluon-caffe` command line: one sub-command per job, errors as one line and exit code 2."""

import argparse
import collections
import contextlib
import json
import os
import sys

from .errors import CaffeError, ConversionError

__all__ = ["main"]


def _cmd_info(args):
    from .info import caffe_info

    info = caffe_info()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print("libcaffe      %s (BVLC %s), %s" % (info["version"], info["commit"], info["debian_source"]))
    print("patch id      %s: %s" % (info["patch_id"], ", ".join(info["patches"])))
    print("build flags   %s" % ", ".join(k for k, v in sorted(info["flags"].items()) if v))
    print("glog          %s" % info["glog"])
    print("protobuf      %s (C++), %s (Python)" % (info["protobuf"], info["python_protobuf"]))
    print("opencv        %s" % info["opencv"])
    print("layer types   %d" % info["layer_types"])
    print("prefix        %s" % info["prefix"])
    return 0


class _UsageError(Exception):
    """A command-line value that cannot be used (reported as one line, exit code 2)."""


# Read caffemodels this large with a progress bar (smaller ones finish before it would draw).
_PROGRESS_MIN_BYTES = 16 << 20


@contextlib.contextmanager
def _weights_progress(caffemodel, quiet):
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr for big caffemodels (else None)."""
    try:
        size = os.path.getsize(caffemodel) if caffemodel else 0
    except OSError:
        size = 0
    if quiet or size < _PROGRESS_MIN_BYTES:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=size, unit="B", unit_scale=True, desc="reading %s" % os.path.basename(caffemodel),
               file=sys.stderr, leave=False)
    try:
        yield lambda done, total: bar.update(done - bar.n)
    finally:
        bar.close()


@contextlib.contextmanager
def _overwrite_hint():
    """The library says overwrite=True; on the command line that is --overwrite."""
    try:
        yield
    except ConversionError as e:
        if "overwrite=True" not in str(e):
            raise
        raise ConversionError(str(e).replace("overwrite=True", "--overwrite")) from None


def _print_written(prefix, converted):
    print("wrote %s-symbol.json" % prefix)
    print("wrote %s-0000.params (%d arg, %d aux arrays)"
          % (prefix, len(converted.arg_params), len(converted.aux_params)))


def _mean_option(value):
    """``--mean``: a mean file (.binaryproto or .npy) or comma-separated per-channel values."""
    if value is None:
        return None
    if os.path.exists(value):
        if value.endswith(".npy"):
            return _load_npy(value, "--mean")
        return value
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise _UsageError("--mean %r is neither an existing file nor comma-separated numbers" % value) from None


def _load_npy(path, what):
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise _UsageError("%s: cannot load %r as a .npy array: %s" % (what, path, str(e).splitlines()[0])) from None


def _convert_options(args):
    return dict(mean=_mean_option(args.mean), rgb=args.rgb, fuse=args.fuse, fallback=not args.no_fallback)


def _shape_text(shape):
    return "x".join(str(d) for d in shape) if shape else "?"


def _cmd_convert(args):
    from .converter.importer import convert

    with _overwrite_hint(), _weights_progress(args.caffemodel, args.quiet) as progress:
        converted = convert(args.prototxt, args.caffemodel, args.output, overwrite=args.overwrite,
                            details=True, progress=progress, **_convert_options(args))
    _print_written(args.output, converted)
    print("inputs: %s" % ", ".join("%s (%s)" % (n, _shape_text(converted.input_shapes.get(n)))
                                   for n in converted.input_names))
    print("outputs: %s" % ", ".join(converted.output_names))
    if args.caffemodel is None:
        print("note: no caffemodel given, the params file holds no trained weights")
    return 0


def _input_option(spec):
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise _UsageError("--input %r: expected NAME=file.npy" % spec)
    return name, _load_npy(path, "--input %s" % name)


def _cmd_verify(args):
    from .verify import verify

    inputs = dict(_input_option(s) for s in args.input) or None
    if args.rtol < 0:
        raise _UsageError("--rtol must be >= 0, got %g" % args.rtol)
    with _weights_progress(args.caffemodel, args.quiet) as progress:
        report = verify(args.prototxt, args.caffemodel, inputs, rtol=args.rtol, seed=args.seed,
                        reference=args.reference_weights, progress=progress, **_convert_options(args))
    print(report.table())
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_layers(args):
    from .converter.support import SUPPORT_KINDS, support_table

    try:
        from . import layer_types
        caffe_types = layer_types()
    except ImportError as e:
        print("note: libcaffe not loaded (%s); the libcaffe column is unknown" % str(e).splitlines()[0],
              file=sys.stderr)
        caffe_types = None
    rows = [(t, kind, "?" if c is None else ("yes" if c else "no")) for t, kind, c in support_table(caffe_types)]
    if args.json:
        print(json.dumps([{"type": t, "converter": how, "libcaffe": c == "yes"} for t, how, c in rows], indent=2))
        return 0
    width = max(len(r[0]) for r in rows + [("type",)])
    print("%s  %-11s  %s" % ("type".ljust(width), "converter", "libcaffe"))
    print("%s  %s  %s" % ("-" * width, "-" * 11, "-" * 8))
    for t, how, caffe in rows:
        print("%s  %-11s  %s" % (t.ljust(width), how, caffe))
    counts = collections.Counter(how for _, how, _ in rows)
    print("\n%d types: %s" % (len(rows), ", ".join("%d %s" % (counts[k], k) for k in SUPPORT_KINDS if counts[k])))
    print("; ".join("%s: %s" % kv for kv in SUPPORT_KINDS.items() if counts[kv[0]]))
    return 0


def _add_convert_options(p):
    p.add_argument("prototxt", help="net definition (.prototxt)")
    p.add_argument("caffemodel", nargs="?", help="trained weights (.caffemodel)")
    p.add_argument("--mean", metavar="F", help="mean to subtract inside the graph: .binaryproto, .npy or "
                   "comma-separated per-channel values (Caffe's BGR order)")
    p.add_argument("--rgb", action="store_true", help="make the model take RGB instead of Caffe's BGR")
    p.add_argument("--fuse", action="store_true", help="fold BatchNorm/Scale into the convolution before it")
    p.add_argument("--no-fallback", action="store_true",
                   help="fail (listing them all) on layers with no native mapping instead of running them in Caffe")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _zoo_progress(quiet):
    """A ``progress(filename, done, total)`` callback with one tqdm bar per file (None when quiet)."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm

    bars = {}

    def progress(filename, done, total):
        bar = bars.get(filename)
        if bar is None and total is not None and total < _PROGRESS_MIN_BYTES:
            return  # small files are done before a bar would draw
        if bar is None:
            bar = bars[filename] = tqdm(total=total, unit="B", unit_scale=True, desc=filename,
                                        file=sys.stderr, leave=False)
        bar.update(done - bar.n)

    def close():
        for bar in bars.values():
            bar.close()
    return progress, close


def _zoo_model(name):
    from .converter.zoo import get_model_info

    try:
        return get_model_info(name)
    except KeyError as e:
        raise _UsageError(e.args[0]) from None


def _cmd_zoo_list(args):
    from .converter.zoo import MODELS, model_dir

    if args.json:
        print(json.dumps([dict(m._asdict(), prototxt=m.prototxt._asdict(), caffemodel=m.caffemodel._asdict(),
                               cache=model_dir(m.name, args.root)) for m in MODELS.values()], indent=2))
        return 0
    width = max(len(n) for n in MODELS)
    for m in MODELS.values():
        print("%s  %-11s %s  %s" % (m.name.ljust(width), _shape_text(m.input_shape), m.channel_order,
                                     m.description))
    return 0


def _cmd_zoo_fetch(args):
    from .converter.zoo import fetch_model

    _zoo_model(args.name)
    progress, close = _zoo_progress(args.quiet)
    try:
        paths = fetch_model(args.name, args.sources, args.root, progress=progress)
    finally:
        close()
    print("prototxt    %s" % paths["prototxt"])
    print("caffemodel  %s" % paths["caffemodel"])
    return 0


def _cmd_zoo_convert(args):
    from .converter.zoo import convert_model, fetch_model

    model = _zoo_model(args.name)
    progress, close = _zoo_progress(args.quiet)
    try:
        fetch_model(args.name, args.sources, args.root, progress=progress)
    finally:
        close()
    with _overwrite_hint():
        converted = convert_model(args.name, args.output, args.sources, args.root, mean=not args.no_mean,
                                  rgb=args.rgb, fuse=args.fuse, fallback=not args.no_fallback,
                                  overwrite=args.overwrite, details=True)
    _print_written(args.output, converted)
    order = "RGB" if args.rgb else model.channel_order
    if args.no_mean or model.mean is None:
        print("input: %s, %s, mean not subtracted" % (_shape_text(model.input_shape), order))
    else:
        print("input: %s, %s 0-255 pixels (mean %s subtracted inside the graph)"
              % (_shape_text(model.input_shape), order, ",".join("%g" % v for v in model.mean)))
    return 0


def _add_zoo_parser(sub):
    zoo = sub.add_parser("zoo", help="well-known Caffe models: list, fetch (checksum-verified), convert")
    zsub = zoo.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND")
    zoo.set_defaults(func=lambda args: (zoo.print_help(), 2)[1])

    def common(p):
        p.add_argument("--root", metavar="DIR", help="cache root (default $GLUON_CAFFE_HOME/models or "
                       "~/.gluon_caffe/models)")

    ls = zsub.add_parser("list", help="the registered models")
    ls.add_argument("--json", action="store_true", help="print as JSON")
    common(ls)
    ls.set_defaults(func=_cmd_zoo_list)

    def fetch_options(p):
        p.add_argument("name", help="model name (see 'zoo list')")
        p.add_argument("--from", dest="sources", action="append", default=[], metavar="PATH",
                       help="take files from a local directory or file instead of downloading (repeatable)")
        p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
        common(p)

    fe = zsub.add_parser("fetch", help="download (or copy --from) a model into the cache, sha-verified")
    fetch_options(fe)
    fe.set_defaults(func=_cmd_zoo_fetch)

    co = zsub.add_parser("convert", help="fetch a model and convert it to PREFIX-symbol.json + PREFIX-0000.params")
    fetch_options(co)
    co.add_argument("-o", "--output", metavar="PREFIX", required=True, help="output prefix")
    co.add_argument("--no-mean", action="store_true", help="do not subtract the model's mean inside the graph")
    co.add_argument("--rgb", action="store_true", help="make the model take RGB instead of its BGR order")
    co.add_argument("--fuse", action="store_true", help="fold BatchNorm/Scale into the convolution before it")
    co.add_argument("--no-fallback", action="store_true",
                    help="fail on layers with no native mapping instead of running them in Caffe")
    co.add_argument("--overwrite", action="store_true", help="replace existing output files")
    co.set_defaults(func=_cmd_zoo_convert)


def _shape_option(spec):
    """``--input-shape NAME=D0,D1,...``"""
    name, sep, dims = spec.partition("=")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or any(d < 1 for d in shape):
        raise _UsageError("--input-shape %r: expected NAME=D0,D1,... with positive sizes" % spec)
    return name, shape


def _cmd_export_onnx(args):
    from .converter.importer import convert
    from .onnx import export_onnx

    shapes = dict(_shape_option(s) for s in args.input_shape) or None
    with _overwrite_hint():
        if os.path.exists(args.output) and not args.overwrite:
            raise ConversionError("output %r already exists (pass overwrite=True to replace it)" % args.output)
        with _weights_progress(args.caffemodel, args.quiet) as progress:
            converted = convert(args.prototxt, args.caffemodel, details=True, progress=progress,
                                input_shapes=shapes, **_convert_options(args))
        model = export_onnx(converted, args.output, input_shapes=shapes, opset=args.opset,
                            dynamic_batch=args.dynamic_batch, overwrite=args.overwrite)
    graph = model.graph
    print("wrote %s (opset %d, %d nodes, %d initializers)"
          % (args.output, args.opset, len(graph.node), len(graph.initializer)))

    def dims(value):
        return "x".join(d.dim_param or str(d.dim_value) for d in value.type.tensor_type.shape.dim) or "?"
    print("inputs: %s" % ", ".join("%s (%s)" % (v.name, dims(v)) for v in graph.input))
    print("outputs: %s" % ", ".join(v.name for v in graph.output))
    return 0


def _cmd_evaluate(args):
    from .evaluate import evaluate

    if args.mean or args.rgb:
        raise _UsageError("evaluate feeds both nets the same inputs: give the mean in --transform-param "
                          "(mean_file / mean_value), and Caffe reads BGR (no --rgb)")

    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(desc="evaluating", unit="img", file=sys.stderr, leave=False)

    def progress(done, total):
        bar.total = total
        bar.update(done - bar.n)

    try:
        report = evaluate(args.prototxt, args.caffemodel, args.db, args.transform_param, backend=args.backend,
                          batch_size=args.batch_size, limit=args.limit, output=args.output,
                          progress=progress if bar is not None else None, fuse=args.fuse,
                          fallback=not args.no_fallback)
    finally:
        if bar is not None:
            bar.close()
    print("%-12s %8s %8s" % ("", "top-1", "top-5"))
    print("%-12s %8.4f %8.4f" % ("gluon_caffe", report.top1, report.top5))
    print("%-12s %8.4f %8.4f" % ("real Caffe", report.caffe_top1, report.caffe_top5))
    print("%d images; the two agree on the top class for %.2f%% of them" % (report.images, 100 * report.agreement))
    return 0


def _cmd_bench(args):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "run_all.py")
    if not os.path.isfile(script):
        raise CaffeError("the benchmarks ship with the source tree (benchmarks/run_all.py), not with an "
                         "installed package: run `make bench` in a clone")
    import subprocess

    return subprocess.call([sys.executable, script] + (["--quick"] if args.quick else []) +
                           (["--only"] + args.only if args.only else []))


def _cmd_make_lmdb(args):
    from .data.writer import make_lmdb_main

    return make_lmdb_main(args.argv)


def build_parser():
    parser = argparse.ArgumentParser(prog="gluon-caffe", description="Real Caffe inside Apache MXNet Gluon.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="describe the libcaffe in use (caffe_info)")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(func=_cmd_info)

    conv = sub.add_parser("convert", help="convert a Caffe model to PREFIX-symbol.json + PREFIX-0000.params")
    _add_convert_options(conv)
    conv.add_argument("-o", "--output", metavar="PREFIX", required=True, help="output prefix")
    conv.add_argument("--overwrite", action="store_true", help="replace existing output files")
    conv.set_defaults(func=_cmd_convert)

    ver = sub.add_parser("verify", help="compare the converted model with real Caffe, blob by blob "
                         "(exit 1 above tolerance)")
    _add_convert_options(ver)
    ver.add_argument("--rtol", type=float, default=1e-4,
                     help="tolerance: max abs diff <= RTOL * max|caffe blob| (default 1e-4)")
    ver.add_argument("--input", action="append", default=[], metavar="NAME=file.npy",
                     help="value of an input blob (repeatable); others are seeded random")
    ver.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    ver.add_argument("--reference-weights", metavar="CAFFEMODEL",
                     help="run Caffe with these weights instead of CAFFEMODEL")
    ver.set_defaults(func=_cmd_verify)

    lay = sub.add_parser("layers", help="Caffe layer types: native, fallback, input or dropped in the converter")
    lay.add_argument("--json", action="store_true", help="print as JSON")
    lay.set_defaults(func=_cmd_layers)

    onx = sub.add_parser("export-onnx", help="convert a Caffe model and write it as an ONNX file "
                         "(onnxruntime, TensorRT)")
    _add_convert_options(onx)
    onx.add_argument("-o", "--output", metavar="FILE.onnx", required=True, help="the ONNX file to write")
    onx.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                     help="input shape (repeatable); default: the prototxt's")
    onx.add_argument("--opset", type=int, default=13, help="ONNX opset, 13 to 17 (default 13)")
    onx.add_argument("--dynamic-batch", action="store_true", help="declare the batch axis symbolic")
    onx.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    onx.set_defaults(func=_cmd_export_onnx)

    _add_zoo_parser(sub)

    ev = sub.add_parser("evaluate", help="top-1/top-5 of the converted model and of real Caffe on a labelled "
                        "LMDB/LevelDB, side by side (the seed's test_converter)")
    _add_convert_options(ev)
    ev.add_argument("db", help="LMDB/LevelDB of labelled Datum records")
    ev.add_argument("--transform-param", default="", metavar="TEXT",
                    help='Caffe transform_param text, e.g. "crop_size: 227 mean_file: \'mean.binaryproto\'"')
    ev.add_argument("--backend", default="lmdb", choices=["lmdb", "leveldb"])
    ev.add_argument("--batch-size", type=int, default=50)
    ev.add_argument("--limit", type=int, default=None, help="only the first N records")
    ev.add_argument("--output", default=None, help="the blob holding class scores (default: first output)")
    ev.set_defaults(func=_cmd_evaluate)

    be = sub.add_parser("bench", help="run the benchmarks (benchmarks/run_all.py) and write benchmarks/RESULTS.md")
    be.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    be.add_argument("--only", nargs="*", default=None, help="benchmark names (bench_convert, ...)")
    be.set_defaults(func=_cmd_bench)

    mk = sub.add_parser("make-lmdb", add_help=False, prefix_chars="\0",
                        help="images listed as 'path label' lines -> LMDB/LevelDB of Datum (convert_imageset)")
    mk.add_argument("argv", nargs=argparse.REMAINDER)
    mk.set_defaults(func=_cmd_make_lmdb)
    return parser


def main(argv=None):
    """Entry point of ``gluon-caffe`` and ``python -m gluon_caffe``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (CaffeError, OSError, _UsageError) as e:
        message = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print("gluon-caffe %s: error: %s" % (args.command, message), file=sys.stderr)
        return 2
