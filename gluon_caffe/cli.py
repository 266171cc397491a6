"""The `gluon-caffe` command line: one sub-command per job, errors as one line and exit code 2."""

import argparse
import json
import sys

from .errors import CaffeError

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


def build_parser():
    parser = argparse.ArgumentParser(prog="gluon-caffe", description="Real Caffe inside Apache MXNet Gluon.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="describe the libcaffe in use (caffe_info)")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(func=_cmd_info)
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
    except (CaffeError, OSError) as e:
        print("gluon-caffe %s: error: %s" % (args.command, e), file=sys.stderr)
        return 2
