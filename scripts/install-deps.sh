#!/usr/bin/env bash
# Installs the Debian packages Topiary builds against (OpenBLAS, LAPACKE, HDF5) when they are missing.
set -euo pipefail
need=()
for pkg in libopenblas-dev liblapacke-dev libhdf5-dev pkg-config unzip; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
    echo "system packages: already installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
echo "system packages: installed ${need[*]}"
