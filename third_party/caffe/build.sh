#!/usr/bin/env bash
# Builds the patched libcaffe: Debian's caffe source package + its patch series + ours (patches/),
# CPU-only, into a cache prefix keyed by the patch set. A second run with the same patches is instant.
#
#   third_party/caffe/build.sh            # prints the install prefix on its last line
#
# Env: GLUON_CAFFE_CACHE (default ~/.cache/gluon_caffe), GLUON_CAFFE_JOBS (default nproc).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${GLUON_CAFFE_CACHE:-$HOME/.cache/gluon_caffe}
version=1.0.0+git20180821.99bd997-8
upstream=${version%-*}
jobs=${GLUON_CAFFE_JOBS:-$(nproc)}

# What the build is: CPU-only, Python layers off, OpenCV + LMDB + LevelDB on.
# BLAS: Debian's pthread OpenBLAS under a SONAME of our own (libgluon_caffe_openblas.so.0, a copy in
# the prefix). The mxnet wheel bundles an OpenMP libopenblas.so.0 that is loaded first; any library
# asking for that SONAME (Debian's libblas.so.3 wrapper does) is handed MXNet's copy, whose OpenMP pool
# spins forever when called from MXNet's engine threads.
multiarch=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
openblas_src=/usr/lib/$multiarch/openblas-pthread/libopenblas.so.0
openblas_name=libgluon_caffe_openblas.so.0
cmake_flags=(
  -DCMAKE_BUILD_TYPE=Release -DCPU_ONLY=ON -DUSE_CUDNN=OFF -DUSE_NCCL=OFF
  -DBUILD_python=OFF -DBUILD_python_layer=OFF -DBUILD_matlab=OFF -DBUILD_docs=OFF
  -DUSE_OPENCV=ON -DUSE_LMDB=ON -DUSE_LEVELDB=ON -DBLAS=Open -DBUILD_SHARED_LIBS=ON
  "-DOpenBLAS_LIB=<prefix>/lib/$openblas_name"
)
# The patch id names the build: Debian version + our patches + the flags.
patch_id=$( (echo "$version"; cat "$here"/patches/*.patch; echo "${cmake_flags[*]}") | sha256sum | cut -c1-12)
prefix="$cache/libcaffe-$patch_id"
if [ -f "$prefix/.complete" ]; then
  echo "$prefix"
  exit 0
fi

# One build at a time per cache (setup.py and the Makefile may both get here).
mkdir -p "$cache/src"
exec 9>"$cache/build.lock"
flock 9
if [ -f "$prefix/.complete" ]; then
  echo "$prefix"
  exit 0
fi

pristine="$cache/src/caffe-$upstream"
if [ ! -d "$pristine" ]; then
  # `apt-get source` runs dpkg-source -x, which applies Debian's own patch series.
  (cd "$cache/src" && rm -rf caffe-"$upstream"* caffe_* && apt-get source -q "caffe=$version" >&2)
  # Keep the tree pristine: builds happen in a copy.
  (cd "$cache/src" && mv "caffe-$upstream" "$pristine.tmp" && mv "$pristine.tmp" "$pristine")
fi

work="$cache/build-$patch_id"
rm -rf "$work" "$work.src"
cp -a "$pristine" "$work.src"
for p in "$here"/patches/*.patch; do
  echo "applying $(basename "$p")" >&2
  patch -d "$work.src" -p1 --quiet --forward < "$p" >&2
done

mkdir -p "$prefix/lib"
cp -L "$openblas_src" "$prefix/lib/$openblas_name"
patchelf --set-soname "$openblas_name" "$prefix/lib/$openblas_name"

# Debian's cmake (3.x) accepts Caffe's cmake_minimum_required(2.8.7); a pip cmake 4 needs the policy flag.
cmake_bin=/usr/bin/cmake
[ -x "$cmake_bin" ] || cmake_bin=cmake
mkdir -p "$work"
(
  cd "$work"
  "$cmake_bin" "$work.src" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DCMAKE_INSTALL_PREFIX="$prefix" \
    "${cmake_flags[@]/<prefix>/$prefix}" >&2
  make -j"$jobs" caffe caffe.bin >&2
  make install >&2
)
echo "$patch_id" > "$prefix/gluon_caffe_patch_id"
echo "$version" > "$prefix/gluon_caffe_debian_version"
(cd "$here/patches" && ls *.patch) > "$prefix/gluon_caffe_patches"
rm -rf "$work" "$work.src"
touch "$prefix/.complete"
echo "$prefix"
