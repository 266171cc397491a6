# The README's commands: `make demo` (the main job) and `make test`. Both set everything up first.
CACHE ?= $(or $(GLUON_CAFFE_CACHE),$(HOME)/.cache/gluon_caffe)
export GLUON_CAFFE_CACHE := $(CACHE)
PY := $(CACHE)/venv/bin/python

.PHONY: setup demo test bench clean

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) examples/demo.py

test: setup
	$(PY) -m pytest -q -rs tests

bench: setup
	$(PY) -m pip install -q -r requirements-bench.txt
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf build gluon_caffe/_ext/_caffe.cpp gluon_caffe/_ext/*.so gluon_caffe/_build_info.py gluon_caffe/proto/caffe_pb2.py
