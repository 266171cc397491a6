#!/usr/bin/env bash
# Installs the Debian 12 packages gluon_caffe needs (build deps of libcaffe, dpkg-dev for the source
# package, the Fashion-MNIST dataset) and enables a deb-src entry for bullseye so `apt-get source caffe` works.
set -euo pipefail

PKGS="build-essential cmake dpkg-dev libboost-system-dev libboost-thread-dev libboost-filesystem-dev
libgoogle-glog-dev libgflags-dev libprotobuf-dev protobuf-compiler libhdf5-dev liblmdb-dev
libleveldb-dev libsnappy-dev libopenblas-dev libopencv-dev dataset-fashion-mnist python3-venv
patchelf"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done

src_list=/etc/apt/sources.list.d/gluon-caffe-bullseye-src.list
need_update=0
if [ ! -f "$src_list" ]; then
  # Reuse the mirror the machine's apt sources already use.
  mirror=$(grep -hE '^[[:space:]]*(URIs:|deb[[:space:]])' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
           /etc/apt/sources.list.d/*.list 2>/dev/null | grep -oE 'https?://[^ ]+/debian/?' | grep -v security \
           | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "deb-src ${mirror%/} bullseye main" | $SUDO tee "$src_list" >/dev/null
  need_update=1
fi
if [ -n "$missing" ] || [ "$need_update" = 1 ]; then
  $SUDO apt-get update -qq
fi
if [ -n "$missing" ]; then
  echo "installing:$missing"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
