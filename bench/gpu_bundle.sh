#!/usr/bin/env bash
# Packs what a bare GPU machine lacks to run bench/gpu_all.sh into .gpu/site.tar.gz (~52 MB), from this
# checkout's .venv: the simulator (pybullet, stripped, with only the Franka Panda of pybullet_data), the
# dataset stack (lerobot, datasets, PyAV), hydra / omegaconf, gymnasium, websockets, the transformers
# version the package is tested with, and emu3-vla's own entry points. A machine that has torch but
# cannot reach a package index (a lent GPU) then runs gpu_all.sh with PYTHONPATH pointing at the
# unpacked folder, which gpu_all.sh does by itself when it finds the bundle.
#
#   bash bench/gpu_bundle.sh && echo /.gpu/ >> .git/info/exclude
set -euo pipefail
cd "$(dirname "$0")/.."
SP=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SITE="$WORK/site"
mkdir -p "$SITE/pybullet_data" .gpu
PACKAGES=(lerobot datasets hydra omegaconf antlr4 draccus mergedeep gymnasium farama_notifications multiprocess
          _multiprocess dill websockets trio outcome sniffio pytz av av.libs transformers socks.py sockshandler.py)
DISTS=(lerobot datasets hydra_core omegaconf antlr4_python3_runtime draccus mergedeep gymnasium farama_notifications
       multiprocess dill websockets trio outcome sniffio PySocks pytz av transformers pybullet emu3_vla)
for p in "${PACKAGES[@]}"; do cp -r "$SP/$p" "$SITE/"; done
for d in "${DISTS[@]}"; do cp -r "$SP/$d"-*.dist-info "$SITE/"; done
cp "$SP/pybullet_data/__init__.py" "$SITE/pybullet_data/"
cp -r "$SP/pybullet_data/franka_panda" "$SITE/pybullet_data/"
cp "$SP"/pybullet.cpython-*.so "$SITE/"
find "$SITE" -name "*.so*" -exec strip --strip-unneeded {} \; 2>/dev/null || true
find "$SITE" -name __pycache__ -type d -prune -exec rm -rf {} +
tar czf .gpu/site.tar.gz -C "$WORK" site
echo "wrote .gpu/site.tar.gz ($(du -h .gpu/site.tar.gz | cut -f1))"
