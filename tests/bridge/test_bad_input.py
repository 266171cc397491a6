"""Bad input never aborts the interpreter: each case raises a CaffeError naming the layer/file and the problem.

All cases run in ONE child process, so a regression to glog's abort shows as a crash (not a hung
or killed test session), and the child proves it is still usable after the last failure.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

IP = 'layer { name: "fc" type: "InnerProduct" inner_product_param { num_output: 3 } }'
CONV = 'layer { name: "conv" type: "Convolution" convolution_param { %s } }'
NET_HEAD = 'name: "n" layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 5 dim: 5 } } }\n'

# id -> (code run in the child, expected exception class name, substrings the message must contain)
CASES = {
    "unknown_type": ('gc.LayerRunner(\'layer { name: "x" type: "Fooo" }\')', "UnsupportedLayerError",
                     ["'x'", "unknown layer type 'Fooo'"]),
    "python_layer": ('gc.LayerRunner(\'layer { name: "py" type: "Python" }\')', "UnsupportedLayerError",
                     ["'py'", "without Python layers"]),
    "no_type": ('gc.LayerRunner(\'layer { name: "t" }\')', "UnsupportedLayerError", ["'t'", "no type field"]),
    "unclosed_brace": ('gc.LayerRunner(\'layer { type: "ReLU" \')', "CaffeProtoError", ["line 1"]),
    "unknown_field": ('gc.LayerRunner(\'layer { type: "InnerProduct" inner_product_param { num_outputs: 3 } }\')',
                      "CaffeProtoError", ["num_outputs"]),
    "bad_value_type": ('gc.LayerRunner(\'layer { type: "InnerProduct" inner_product_param { num_output: "a" } }\')',
                       "CaffeProtoError", ["num_output"]),
    "bad_enum": ('gc.LayerRunner(\'layer { type: "Pooling" pooling_param { pool: MEDIAN } }\')',
                 "CaffeProtoError", ["MEDIAN"]),
    "two_layers": ('gc.LayerRunner(\'layer { type: "ReLU" } layer { type: "TanH" }\')', "CaffeProtoError",
                   ["exactly one layer"]),
    "conv_no_num_output": ('gc.LayerRunner(\'%s\').setup([(1, 2, 5, 5)])' % (CONV % "kernel_size: 3"),
                           "CaffeCheckError", ["'conv'", "num_output"]),
    "conv_no_kernel": ('gc.LayerRunner(\'%s\').setup([(1, 2, 5, 5)])' % (CONV % "num_output: 2"),
                       "CaffeCheckError", ["'conv'", "kernel_size must be specified"]),
    "conv_kernel_and_kernel_h": ('gc.LayerRunner(\'%s\').setup([(1, 2, 5, 5)])'
                                 % (CONV % "num_output: 2 kernel_size: 3 kernel_h: 3 kernel_w: 3"),
                                 "CaffeCheckError", ["'conv'", "kernel"]),
    "conv_stride_zero": ('gc.LayerRunner(\'%s\').setup([(1, 2, 5, 5)])'
                         % (CONV % "num_output: 2 kernel_size: 3 stride: 0"), "CaffeCheckError", ["'conv'", "stride"]),
    "conv_kernel_too_big": ('gc.LayerRunner(\'%s\').setup([(1, 2, 3, 3)])' % (CONV % "num_output: 2 kernel_size: 9"),
                            "CaffeCheckError", ["'conv'", "shape"]),
    "conv_group_mismatch": ('gc.LayerRunner(\'%s\').setup([(1, 3, 5, 5)])'
                            % (CONV % "num_output: 2 kernel_size: 3 group: 2"), "CaffeCheckError", ["'conv'", "group"]),
    "ip_two_bottoms": ('gc.LayerRunner(\'%s\').setup([(2, 3), (2, 3)])' % IP, "CaffeCheckError", ["'fc'", "bottom"]),
    "ip_bad_axis": ('gc.LayerRunner(\'layer { name: "fc" type: "InnerProduct" inner_product_param '
                    '{ num_output: 3 axis: 4 } }\').setup([(2, 3)])', "CaffeCheckError", ["'fc'", "axis"]),
    "softmax_bad_axis": ('gc.LayerRunner(\'layer { name: "sm" type: "Softmax" softmax_param { axis: 3 } }\')'
                         '.setup([(2, 3)])', "CaffeCheckError", ["'sm'", "axis"]),
    "pool_global_with_kernel": ('gc.LayerRunner(\'layer { name: "p" type: "Pooling" pooling_param '
                                '{ global_pooling: true kernel_size: 2 } }\').setup([(1, 2, 4, 4)])',
                                "CaffeCheckError", ["'p'", "Global_pooling"]),
    "eltwise_shape_mismatch": ('gc.LayerRunner(\'layer { name: "e" type: "Eltwise" }\').setup([(2, 3), (2, 4)])',
                               "CaffeCheckError", ["'e'", "shape"]),
    "concat_shape_mismatch": ('gc.LayerRunner(\'layer { name: "c" type: "Concat" }\').setup([(2, 3, 4), (2, 3, 5)])',
                              "CaffeCheckError", ["'c'", "shape"]),
    "slice_point_out_of_range": ('gc.LayerRunner(\'layer { name: "s" type: "Slice" slice_param '
                                 '{ axis: 1 slice_point: 7 } }\').setup([(2, 4)], 2)', "CaffeCheckError", ["'s'"]),
    "reshape_two_inferred": ('gc.LayerRunner(\'layer { name: "r" type: "Reshape" reshape_param { shape '
                             '{ dim: -1 dim: -1 } } }\').setup([(2, 4)])', "CaffeCheckError", ["'r'", "-1"]),
    "crop_too_big": ('gc.LayerRunner(\'layer { name: "cr" type: "Crop" crop_param { axis: 2 offset: 3 } }\')'
                     '.setup([(1, 1, 4, 4), (1, 1, 3, 3)])', "CaffeCheckError", ["'cr'", "crop"]),
    "runner_dtype": ('gc.LayerRunner(\'layer { type: "ReLU" }\', dtype="float16")', "CaffeShapeError",
                     ["float16", "float32 or float64"]),
    "input_dtype": ('r = gc.LayerRunner(\'layer { name: "a" type: "ReLU" }\'); r.setup([(2, 2)]); '
                    'r.forward(np.zeros((2, 2), dtype=np.int64))', "CaffeShapeError", ["'a'", "int64"]),
    "forward_before_setup": ('gc.LayerRunner(\'layer { name: "a" type: "ReLU" }\').forward(np.zeros(2, "f4"))',
                             "CaffeError", ["'a'", "setup"]),
    "wrong_number_of_inputs": ('r = gc.LayerRunner(\'%s\'); r.setup([(2, 3)]); '
                               'r.forward(np.zeros((2, 3), "f4"), np.zeros((2, 3), "f4"))' % IP,
                               "CaffeShapeError", ["'fc'", "inputs"]),
    "forward_shape_mismatch": ('r = gc.LayerRunner(\'%s\'); r.setup([(2, 3)]); r.forward(np.zeros((2, 5), "f4"))' % IP,
                               "CaffeCheckError", ["'fc'", "Input size incompatible"]),
    "backward_diff_shape": ('r = gc.LayerRunner(\'%s\'); r.setup([(2, 3)]); x = np.zeros((2, 3), "f4"); '
                            'y, = r.forward(x); r.backward([x], [y], [np.zeros((2, 4), "f4")])' % IP,
                            "CaffeShapeError", ["'fc'", "gradient"]),
    "net_missing_file": ('gc.CaffeNet("/nonexistent/deploy.prototxt")', "CaffeIOError", ["/nonexistent/deploy.prototxt"]),
    "net_malformed": ('gc.CaffeNet(NET_HEAD + "layer { name: \\"r\\" type: \\"ReLU\\" bottom: \\"data\\" ")',
                      "CaffeProtoError", ["line 2"]),
    "net_unknown_bottom": ('gc.CaffeNet(NET_HEAD + \'layer { name: "r" type: "ReLU" bottom: "nope" top: "y" }\')',
                           "CaffeCheckError", ["'r'", "nope"]),
    "net_unknown_type": ('gc.CaffeNet(NET_HEAD + \'layer { name: "q" type: "Quux" bottom: "data" top: "y" }\')',
                         "UnsupportedLayerError", ["'q'", "Quux"]),
    "net_duplicate_top": ('gc.CaffeNet(NET_HEAD + \'layer { name: "a" type: "ReLU" bottom: "data" top: "y" }\\n'
                          'layer { name: "b" type: "TanH" bottom: "data" top: "y" }\')', "CaffeCheckError",
                          ["'b'", "multiple sources"]),
    "net_data_layer_missing_db": ('gc.CaffeNet(\'layer { name: "d" type: "Data" top: "x" top: "l" data_param '
                                  '{ source: "/nonexistent_lmdb" batch_size: 2 backend: LMDB } }\')',
                                  "CaffeCheckError", ["'d'"]),
    "net_unknown_input": ('gc.CaffeNet(NET_HEAD).forward(image=np.zeros((1, 2, 5, 5)))', "CaffeShapeError",
                          ["'image'", "data"]),
    "caffemodel_missing": ('gc.CaffeNet(NET_HEAD, caffemodel="/nonexistent.caffemodel")', "CaffeIOError",
                           ["/nonexistent.caffemodel"]),
    "caffemodel_truncated": ('open(TMP + "/t.caffemodel", "wb").write(GOOD_MODEL[:len(GOOD_MODEL) // 2]); '
                             'gc.CaffeNet(CONV_NET, caffemodel=TMP + "/t.caffemodel")', "CaffeProtoError",
                             ["t.caffemodel", "truncated"]),
    "caffemodel_garbage": ('open(TMP + "/g.caffemodel", "wb").write(b"\\xff" * 64); '
                           'gc.CaffeNet(CONV_NET, caffemodel=TMP + "/g.caffemodel")', "CaffeProtoError",
                           ["g.caffemodel"]),
    "caffemodel_shape_mismatch": ('gc.CaffeNet(CONV_NET.replace("num_output: 4", "num_output: 5"), '
                                  'caffemodel=TMP + "/good.caffemodel")', "CaffeCheckError",
                                  ["'conv'", "shape mismatch"]),
    "net_save_bad_dir": ('gc.CaffeNet(CONV_NET).save("/nonexistent_dir/x.caffemodel")', "CaffeIOError",
                         ["/nonexistent_dir"]),
}

CHILD = r'''
import json, sys, tempfile, traceback
import numpy as np
import gluon_caffe as gc
NET_HEAD = %(net_head)r
CONV_NET = NET_HEAD + 'layer { name: "conv" type: "Convolution" bottom: "data" top: "y" convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 1 } } }'
TMP = tempfile.mkdtemp()
gc.CaffeNet(CONV_NET).save(TMP + "/good.caffemodel")
GOOD_MODEL = open(TMP + "/good.caffemodel", "rb").read()
cases = json.loads(sys.stdin.read())
for name, code in cases.items():
    try:
        exec(code)
        result = {"raised": None}
    except BaseException as e:
        result = {"raised": type(e).__name__, "message": str(e), "caffe_error": isinstance(e, gc.CaffeError)}
    print("CASE " + json.dumps([name, result]), flush=True)
r = gc.LayerRunner('layer { type: "InnerProduct" inner_product_param { num_output: 2 weight_filler { type: "constant" value: 1 } } }')
r.setup([(1, 3)])
print("ALIVE " + json.dumps(r.forward(np.ones((1, 3), "f4"))[0].tolist()), flush=True)
'''


@pytest.fixture(scope="module")
def child_results():
    code = CHILD % {"net_head": NET_HEAD}
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps({k: v[0] for k, v in CASES.items()}),
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    results = {}
    alive = None
    for line in proc.stdout.splitlines():
        if line.startswith("CASE "):
            name, result = json.loads(line[5:])
            results[name] = result
        elif line.startswith("ALIVE "):
            alive = json.loads(line[6:])
    return proc, results, alive


def test_at_least_30_cases():
    assert len(CASES) >= 30


def test_interpreter_survives_every_case(child_results):
    proc, results, alive = child_results
    assert proc.returncode == 0, "child died (rc %d): %s" % (proc.returncode, proc.stderr[-2000:])
    assert len(results) == len(CASES)
    assert alive == [[3.0, 3.0]]


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_raises_clear_caffe_error(name, child_results):
    _, results, _ = child_results
    assert name in results, "case %s did not run (child crashed before it?)" % name
    result = results[name]
    _, expected, substrings = CASES[name]
    assert result["raised"] == expected, result
    assert result["caffe_error"], "%s is not a gluon_caffe.CaffeError" % result["raised"]
    for s in substrings:
        assert s in result["message"], "%r not in message %r" % (s, result["message"])
    assert "\n" not in result["message"].strip() or len(result["message"]) < 2000
