"""libcaffe's BLAS must not be MXNet's OpenMP OpenBLAS: a Caffe gemm on an engine thread used to spin forever."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_hybridized_lenet_training_after_a_big_imperative_batch_finishes(tmp_path):
    # The hang (seen with the examples' LeNet): an imperative call on a 500-image batch from Caffe's
    # Data layer, then hybridized fwd+bwd steps. With MXNet's libopenblas.so.0 LD_PRELOADed this
    # script hangs in OpenBLAS's exec_blas; with libcaffe's own OpenBLAS it finishes in seconds.
    code = textwrap.dedent('''
        import faulthandler, sys
        faulthandler.dump_traceback_later(100, exit=True)   # a hang becomes a failure, not a stuck suite
        import mxnet as mx
        import gluon_caffe.data as gcd
        sys.path.insert(0, "examples")
        import lenet_caffe_conv as lenet
        paths = lenet.write_fashion_lmdbs(sys.argv[1], 640, 500)  # sys.argv[1]: an existing folder
        proto = lenet.DATA_LAYERS.format(train=paths["train"], test=paths["test"], batch=64, test_batch=500)
        train = gcd.CaffeDataset(proto, phase="train")  # its prefetch thread is part of the recipe
        test = gcd.CaffeDataset(proto, phase="test")
        net = lenet.build_lenet(True)
        net.initialize(mx.init.Xavier())
        x0, _ = next(iter(test))
        net(x0)  # not waited for: still running on an engine thread when training starts
        net.hybridize()
        for _ in range(5):
            with mx.autograd.record():
                y = net(mx.nd.random.uniform(shape=(64, 1, 28, 28)))
            y.backward()
            mx.nd.waitall()
        print("FINISHED")
    ''')
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0 and "FINISHED" in proc.stdout, proc.stderr[-3000:]


def test_libcaffe_blas_is_not_libopenblas_so_0():
    import gluon_caffe as gc

    libcaffe = os.path.join(gc.caffe_info()["prefix"], "lib", "libcaffe.so")
    needed = subprocess.run(["readelf", "-d", libcaffe], capture_output=True, text=True, check=True).stdout
    assert "libgluon_caffe_openblas.so.0" in needed
    assert "[libopenblas.so.0]" not in needed
