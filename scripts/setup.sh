#!/usr/bin/env bash
# Everything `make demo` and `make test` need, idempotent: Debian packages, the patched libcaffe,
# the venv with the pins, gluon_caffe in develop mode. Slow parts are cached outside the clone.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${GLUON_CAFFE_CACHE:-$HOME/.cache/gluon_caffe}
venv="$cache/venv"
mkdir -p "$cache"

step() { printf '\n== %s\n' "$*" >&2; }

step "system packages"
bash "$root/scripts/install-system-deps.sh"

step "libcaffe (patched, cached by patch id)"
prefix=$(GLUON_CAFFE_CACHE="$cache" bash "$root/third_party/caffe/build.sh" | tail -n1)
echo "libcaffe: $prefix" >&2

step "python venv ($venv)"
python=${GLUON_CAFFE_PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
reqs="$root/requirements-test.txt"
stamp="$venv/.requirements.sha256"
want=$(cat "$root/requirements.txt" "$reqs" | sha256sum | cut -c1-64)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$reqs"
  echo "$want" > "$stamp"
fi

step "gluon_caffe (develop mode)"
log="$cache/setup-build.log"
cd "$root"
# build_ext is incremental; the editable install is redone only when it points elsewhere.
if ! GLUON_CAFFE_PREFIX="$prefix" "$venv/bin/python" setup.py -q build_ext --inplace >"$log" 2>&1; then
  cat "$log" >&2; exit 1
fi
installed=$(cd / && "$venv/bin/python" -c "import gluon_caffe, os; print(os.path.dirname(os.path.dirname(gluon_caffe.__file__)))" 2>/dev/null || true)
if [ "$installed" != "$root" ]; then
  if ! GLUON_CAFFE_PREFIX="$prefix" "$venv/bin/python" -m pip install -q --no-build-isolation --no-deps -e . >"$log" 2>&1; then
    cat "$log" >&2; exit 1
  fi
fi
"$venv/bin/python" -c "import gluon_caffe as g; i = g.caffe_info(); print('gluon_caffe ready: libcaffe', i['version'], 'patch', i['patch_id'])"
