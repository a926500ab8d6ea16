#!/usr/bin/env bash
# Build kube-apiserver + kube-controller-manager from Debian's kubernetes source
# package and cache them outside the repo, so each machine pays the ~4 min build once.
# Only Debian's package mirrors are needed (see DESIGN.md, "A real Kubernetes API").
#
# Env: CACHEFLEET_KUBE_CACHE  cache dir (default /var/cache/cachefleet/kube);
#      binaries end up in $CACHEFLEET_KUBE_CACHE/bin.
set -euo pipefail

CACHE="${CACHEFLEET_KUBE_CACHE:-/var/cache/cachefleet/kube}"
BIN="$CACHE/bin"
DEBIAN_SOURCES=/etc/apt/sources.list.d/debian.sources
DEBSRC_FILE=/etc/apt/sources.list.d/cachefleet-deb-src.sources
PKGS=(golang-go rsync etcd-server golang-github-modern-go-reflect2-dev dpkg-dev)

need_root() {
    [ "$(id -u)" -eq 0 ] && return 0
    # apt-get and the default cache dir need root; say exactly what to run instead.
    cat >&2 <<EOF
$0: must run as root (it installs Debian packages). Run:
  sudo CACHEFLEET_KUBE_CACHE=$CACHE $(cd "$(dirname "$0")" && pwd)/$(basename "$0")
EOF
    exit 1
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# The e2e tests need etcd on PATH even when the kube binaries are already cached.
if ! command -v etcd >/dev/null; then
    need_root
    apt_install etcd-server || { apt-get update && apt_install etcd-server; }
fi

if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ]; then
    echo "kube control plane binaries already cached in $BIN"
    exit 0
fi
need_root

# apt-get source needs deb-src entries; derive them from the existing Debian deb822
# entry rather than naming any mirror host, so this follows whatever mirror the machine uses.
if ! grep -qsE '^\s*(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources; then
    [ -f "$DEBIAN_SOURCES" ] || { echo "$0: no $DEBIAN_SOURCES to derive deb-src from" >&2; exit 1; }
    # Keep only the fields apt needs; turn each "Types: deb" stanza into deb-src.
    awk '/^Types:/ {print "Types: deb-src"; next}
         /^(URIs|Suites|Components|Signed-By):/ || /^$/ {print}' "$DEBIAN_SOURCES" > "$DEBSRC_FILE"
fi
apt-get update
apt_install "${PKGS[@]}"

WORK="$CACHE/work"
rm -rf "$WORK"
mkdir -p "$WORK" "$BIN"
# Private Go build cache so the ~GB of objects is deleted with the tree below.
export GOCACHE="$WORK/go-build"
cd "$WORK"
# As root, apt warns the download is unsandboxed; harmless.
apt-get source kubernetes
SRC="$(find "$WORK" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n1)"
cd "$SRC"

# The vendored reflect2 predates Go 1.18 support (fixed in 1.0.2, which Debian ships):
# with it the apiserver builds but SIGSEGVs on its first CRD request.
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2

make WHAT=cmd/kube-apiserver
make WHAT=cmd/kube-controller-manager
for b in kube-apiserver kube-controller-manager; do
    install -m 0755 "$(find _output -type f -name "$b" | head -n1)" "$BIN/$b"
done

# The tree plus Go build cache is ~2.5 GB; only the two binaries are worth keeping.
cd /
rm -rf "$WORK"
echo "built $BIN/kube-apiserver and $BIN/kube-controller-manager"
