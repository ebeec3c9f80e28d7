#!/bin/sh
# bundle-python.sh SRC DEST — build a self-contained clew runtime in DEST (the image uses
# /opt/clew/current): Debian's Python interpreter and standard library, the shared libraries they
# load (glibc and its loader included), and clew with its dependencies.
#
# Why not a venv: a venv's python is a symlink to the image's /usr/bin/python3 and its standard
# library stays in the image's /usr/lib/python3.11. clew-cni is executed by the container runtime
# on the *host*, which may have no Python, another version, or an older glibc. This tree runs
# anywhere its path is the same, because the interpreter is patched to load its own dynamic loader
# (PT_INTERP = DEST/lib/ld/ld-linux-*.so.*) and its own libraries (RPATH $ORIGIN/../lib/ld). So it
# is not relocatable: the init container copies it to the same path on the host (deploy/install-cni.sh).
#
# Needs: Debian's python3 and python3-venv (for a throwaway pip), patchelf, ldd (libc-bin).
set -eu

src=${1:?usage: bundle-python.sh SRC DEST}
dest=${2:?usage: bundle-python.sh SRC DEST}
py=$(readlink -f /usr/bin/python3)                      # /usr/bin/python3.11 on Debian 12
ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
site="$dest/lib/python3/dist-packages"                    # on sys.path under any prefix (Debian's site.py)

rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/lib/ld" "$site"

# 1. The interpreter and its standard library, minus what a node agent never imports.
cp "$py" "$dest/bin/python$ver"
ln -s "python$ver" "$dest/bin/python3"
cp -a "/usr/lib/python$ver" "$dest/lib/python$ver"
(
  cd "$dest/lib/python$ver"
  rm -rf test idlelib tkinter turtledemo lib2to3 pydoc_data ensurepip sitecustomize.py \
         EXTERNALLY-MANAGED config-"$ver"-*/*.a
  find . -name __pycache__ -type d -prune -exec rm -rf {} +
)

# 2. clew and its dependencies, installed with a throwaway venv's pip.
"$py" -m venv /tmp/clew-build-venv
/tmp/clew-build-venv/bin/pip install --quiet --no-cache-dir --no-compile --target "$site" "$src"
rm -rf /tmp/clew-build-venv "$site/bin"

# 3. Every shared library the interpreter and the extension modules load, and the loader itself.
{ echo "$dest/bin/python$ver"; find "$dest/lib" -name '*.so*' -type f; } |
  xargs ldd 2>/dev/null |
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/.*\/ld-linux/ { print $1 }' |
  sort -u |
  while read -r lib; do cp -L "$lib" "$dest/lib/ld/$(basename "$lib")"; done
loader=$(cd "$dest/lib/ld" && ls ld-linux*.so.*)
patchelf --set-interpreter "$dest/lib/ld/$loader" --force-rpath --set-rpath '$ORIGIN/../lib/ld' "$dest/bin/python$ver"

# 4. Launchers for clew's console scripts (pyproject's [project.scripts]): no shell needed, the
#    kernel runs the patched interpreter from the #! line. -S skips site.py (clew-cni runs once per
#    pod: every import counts), so each launcher puts dist-packages on sys.path itself. Byte code
#    is compiled now, so that no run writes into the host's copy.
"$dest/bin/python3" -SIB - "$dest" "$site" <<'LAUNCHERS'
import os, sys
sys.path.insert(0, sys.argv[2])
from importlib.metadata import distribution
for ep in distribution("clew").entry_points.select(group="console_scripts"):
    path = os.path.join(sys.argv[1], "bin", ep.name)
    with open(path, "w") as out:
        out.write(f"#!{sys.argv[1]}/bin/python3 -SIB\nimport sys\nsys.path.insert(0, {sys.argv[2]!r})\n"
                  f"from {ep.module} import {ep.attr}\nsys.exit({ep.attr}())\n")
    os.chmod(path, 0o755)
LAUNCHERS
# unchecked-hash: the byte code stays valid when the init container's copy changes the mtimes.
"$dest/bin/python3" -IB -m compileall -q -j 0 --invalidation-mode unchecked-hash "$dest/lib" >/dev/null
# A build id: the init container copies the tree to the host only when this changes.
(cd "$dest" && find . -type f ! -name BUILD-ID -exec sha256sum {} + | sort -k 2 | sha256sum | cut -c1-16) >"$dest/BUILD-ID"
