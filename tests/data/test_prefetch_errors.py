"""A CHECK failure inside Caffe's prefetch thread reaches Python as CaffeCheckError (patch 0004), never an abort."""

import subprocess
import sys
import textwrap


def test_bad_record_in_prefetch_thread_raises_instead_of_aborting(tmp_path):
    code = textwrap.dedent('''
        import sys
        import lmdb, numpy as np
        import gluon_caffe as gc
        from gluon_caffe.proto import caffe_pb2

        path = sys.argv[1]
        env = lmdb.open(path, map_size=1 << 24)
        with env.begin(write=True) as txn:
            for i in range(6):
                side = 2 if i == 3 else 4          # record 3 is smaller than the others
                d = caffe_pb2.Datum(channels=1, height=side, width=side, label=i,
                                    data=bytes(range(side * side)))
                txn.put(b"%08d" % i, d.SerializeToString())
        env.close()
        net = gc.CaffeNet('layer { name: "d" type: "Data" top: "x" top: "y" '
                          'data_param { source: "%s" batch_size: 2 backend: LMDB prefetch: 1 } }' % path)
        errors = 0
        for _ in range(4):
            try:
                net.forward()
            except gc.CaffeCheckError as e:
                errors += 1
                assert "layer 'd' (Data)" in str(e) and "prefetch thread" in str(e), e
        assert errors >= 1
        print("ALIVE", errors)
    ''')
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "db")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, "rc %d: %s" % (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.startswith("ALIVE")
