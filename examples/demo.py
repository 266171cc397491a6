"""The main job, end to end (grows as gluon_caffe grows): real libcaffe driven from Python."""

import numpy as np

import gluon_caffe as gc


def main():
    info = gc.caffe_info()
    print("libcaffe %s (BVLC %s, %s), patch %s" % (info["version"], info["commit"], info["debian_source"],
                                                   info["patch_id"]))
    print("  built with: %s; glog %s, protobuf %s; %d layer types"
          % (", ".join(k for k, v in info["flags"].items() if v), info["glog"], info["protobuf"],
             info["layer_types"]))

    # One real Caffe layer on numpy arrays.
    conv = gc.LayerRunner('layer { name: "conv1" type: "Convolution" convolution_param { num_output: 20 '
                          'kernel_size: 5 weight_filler { type: "xavier" } } }')
    x = np.random.default_rng(0).standard_normal((64, 1, 28, 28)).astype(np.float32)
    print("Caffe Convolution: input %s -> output %s, weights %s"
          % (x.shape, conv.setup([x.shape])[0], conv.param_shapes))
    y, = conv.forward(x)
    dx, = conv.backward([x], [y], [np.ones_like(y)])
    print("  forward mean %.6f, backward |dx| mean %.6f" % (y.mean(), np.abs(dx).mean()))

    # Caffe's CHECK failures are Python exceptions, never an abort.
    try:
        gc.LayerRunner('layer { name: "bad" type: "Convolution" convolution_param { num_output: 2 } }').setup(
            [(1, 1, 4, 4)])
    except gc.CaffeCheckError as e:
        print("A bad layer raises, the interpreter lives on:\n  %s: %s" % (type(e).__name__, e))


if __name__ == "__main__":
    main()
