#!/bin/sh
# install-cni.sh — the DaemonSet's init container: put clew-cni, its runtime and its network
# config on the host, each step atomic (copy aside, then rename), so that a container runtime
# calling the plugin meanwhile sees the old files or the new ones, never half of either.
#
#   1. the runtime: this image's /opt/clew/current (deploy/bundle-python.sh) to the host's
#      /opt/clew/<build-id>, copied only when that build is not there yet; then the symlink
#      /opt/clew/current is switched to it by rename. The tree only runs at that very path, which
#      is why the host path and the image path are the same. The previous build is kept (a plugin
#      may still be running from it); older ones are removed.
#   2. /opt/cni/bin/clew: the clew-cni launcher (#!/opt/clew/current/bin/python3), the binary
#      the conflist's "type": "clew" names.
#   3. /opt/cni/bin/portmap, the reference plugin the conflist chains, when the host has none.
#   4. /etc/cni/net.d/10-clew.conflist from the ConfigMap.
#
# Every path is a variable, so that the script can be tried outside a cluster.
set -eu

CLEW_SRC=${CLEW_SRC:-/opt/clew/current}
CLEW_HOST_DIR=${CLEW_HOST_DIR:-/host/opt/clew}
CNI_BIN_DIR=${CNI_BIN_DIR:-/host/opt/cni/bin}
CNI_CONF_DIR=${CNI_CONF_DIR:-/host/etc/cni/net.d}
CNI_CONFLIST=${CNI_CONFLIST:-/etc/clew/10-clew.conflist}
PORTMAP=${PORTMAP:-/usr/lib/cni/portmap}
CONFLIST_NAME=${CONFLIST_NAME:-10-clew.conflist}

say() { echo "install-cni: $*"; }

# install SRC DIR NAME MODE: copy SRC to DIR/.NAME.tmp, set MODE, rename to DIR/NAME.
install_file() {
  cp "$1" "$2/.$3.tmp"
  chmod "$4" "$2/.$3.tmp"
  mv -f "$2/.$3.tmp" "$2/$3"
  say "installed $2/$3"
}

mkdir -p "$CLEW_HOST_DIR" "$CNI_BIN_DIR" "$CNI_CONF_DIR"

# 1. the runtime
id=$(cat "$CLEW_SRC/BUILD-ID")
if [ -e "$CLEW_HOST_DIR/$id/BUILD-ID" ]; then
  say "runtime $id is already on the host"
else
  rm -rf "$CLEW_HOST_DIR/.tmp-$id"
  cp -a "$CLEW_SRC" "$CLEW_HOST_DIR/.tmp-$id"
  mv "$CLEW_HOST_DIR/.tmp-$id" "$CLEW_HOST_DIR/$id"
  say "copied runtime $id"
fi
previous=""
if [ -L "$CLEW_HOST_DIR/current" ]; then
  previous=$(readlink "$CLEW_HOST_DIR/current")
elif [ -e "$CLEW_HOST_DIR/current" ]; then
  rm -rf "$CLEW_HOST_DIR/current"  # not ours to keep: a directory or file in the symlink's place
fi
ln -sfn "$id" "$CLEW_HOST_DIR/.current.tmp"
mv -T "$CLEW_HOST_DIR/.current.tmp" "$CLEW_HOST_DIR/current"
say "$CLEW_HOST_DIR/current -> $id"
for old in "$CLEW_HOST_DIR"/* "$CLEW_HOST_DIR"/.tmp-*; do
  [ -e "$old" ] || continue
  case $(basename "$old") in
    current | "$id" | "$previous") ;;
    *) rm -rf "$old" && say "removed $old" ;;
  esac
done

# 2. the plugin; 3. portmap, unless the host brought its own
install_file "$CLEW_SRC/bin/clew-cni" "$CNI_BIN_DIR" clew 0755
if [ -e "$CNI_BIN_DIR/portmap" ]; then
  say "keeping the host's $CNI_BIN_DIR/portmap"
else
  install_file "$PORTMAP" "$CNI_BIN_DIR" portmap 0755
fi

# 4. the network config (the runtime reads the first file of the folder in lexical order)
install_file "$CNI_CONFLIST" "$CNI_CONF_DIR" "$CONFLIST_NAME" 0644
