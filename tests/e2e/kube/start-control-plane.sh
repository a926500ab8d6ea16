#!/usr/bin/env bash
# Start etcd + kube-apiserver + kube-controller-manager on 127.0.0.1 (free ports) for e2e tests.
# There is no kubelet: pods are created but stay Pending.
#
# Usage: start-control-plane.sh DIR     (stop with stop-control-plane.sh DIR)
#   Writes DIR/kubeconfig (admin, system:masters), DIR/pids, DIR/*.log, DIR/audit.log (write
#   requests, one JSON line each); prints the kubeconfig path.
# Env: CACHEFLEET_KUBE_CACHE  where build-control-plane.sh cached bin/ (default /var/cache/cachefleet/kube)
#      CACHEFLEET_KUBE_TIMEOUT seconds to wait for each component (default 60)
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
DIR="$(cd "$1" && pwd)"
BIN="${CACHEFLEET_KUBE_CACHE:-/var/cache/cachefleet/kube}/bin"
TIMEOUT="${CACHEFLEET_KUBE_TIMEOUT:-60}"
HERE="$(cd "$(dirname "$0")" && pwd)"

for b in "$BIN/kube-apiserver" "$BIN/kube-controller-manager"; do
    [ -x "$b" ] || { echo "$0: $b missing; run $HERE/build-control-plane.sh first" >&2; exit 1; }
done
command -v etcd >/dev/null || { echo "$0: etcd not on PATH; run $HERE/build-control-plane.sh" >&2; exit 1; }
if [ -s "$DIR/pids" ]; then
    echo "$0: $DIR/pids exists; stop that control plane first" >&2; exit 1
fi

# Free ports chosen by the kernel, so several control planes (parallel test runs) can coexist.
read -r ETCD_PORT PEER_PORT API_PORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')

# Any failure from here on must not leave half a control plane running.
trap 'echo "$0: start-up failed; logs in $DIR" >&2; "$HERE/stop-control-plane.sh" "$DIR" >/dev/null 2>&1 || true' ERR

wait_for() {  # wait_for WHAT CMD... : poll until CMD succeeds
    local what="$1"; shift
    for _ in $(seq $((TIMEOUT * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        # Fail fast (not after TIMEOUT) when a component died, e.g. on a bad flag.
        while read -r name pid; do
            kill -0 "$pid" 2>/dev/null || { echo "$0: $name exited; see $DIR/$name.log" >&2; return 1; }
        done <"$DIR/pids"
        sleep 0.2
    done
    echo "$0: timed out waiting for $what" >&2
    return 1
}

start() {  # start NAME CMD... : detached so it outlives this script; pid recorded for stop
    setsid nohup "${@:2}" >"$DIR/$1.log" 2>&1 </dev/null &
    echo "$1 $!" >>"$DIR/pids"
}

# --- PKI: kube 1.20 refuses serving certs without IP SANs and needs an SA signing key.
PKI="$DIR/pki"
mkdir -p "$PKI"
(
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
        -subj /CN=cachefleet-e2e-ca 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
        -subj /CN=kube-apiserver 2>/dev/null
    # 10.0.0.1 is the "kubernetes" Service IP from --service-cluster-ip-range below.
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
        -out apiserver.crt -days 3650 -extfile <(printf '%s\n' \
        'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc' \
        'basicConstraints=CA:FALSE' 'keyUsage=digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth') 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)
ADMIN_TOKEN="$(openssl rand -hex 24)"
KCM_TOKEN="$(openssl rand -hex 24)"
# The controller-manager gets its real bootstrap RBAC identity (not system:masters) so
# RBAC problems show up here as they would in a real cluster.
cat >"$PKI/tokens.csv" <<EOF
$ADMIN_TOKEN,admin,admin,"system:masters"
$KCM_TOKEN,system:kube-controller-manager,system:kube-controller-manager
EOF
chmod 600 "$PKI"/*.key "$PKI/tokens.csv"

kubeconfig() {  # kubeconfig USER TOKEN
    cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cachefleet-e2e
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $1
  user:
    token: $2
contexts:
- name: cachefleet-e2e
  context: {cluster: cachefleet-e2e, user: $1, namespace: default}
current-context: cachefleet-e2e
EOF
}
kubeconfig admin "$ADMIN_TOKEN" >"$DIR/kubeconfig"
kubeconfig system:kube-controller-manager "$KCM_TOKEN" >"$DIR/kcm.kubeconfig"
chmod 600 "$DIR/kubeconfig" "$DIR/kcm.kubeconfig"

# --- Audit: one JSON line per write request (who, which user agent, what object), so tests
# count the operator's own writes instead of inferring them from resourceVersions, which
# kube-controller-manager's status updates also change.
cat >"$DIR/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: None
EOF

# --- etcd: peer URL set explicitly, else it grabs the default port 2380 and collides.
start etcd etcd --name default --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
    --initial-cluster "default=http://127.0.0.1:$PEER_PORT"
wait_for etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

# --- kube-apiserver. --insecure-port=0: 1.20 otherwise also listens on :8080.
# --endpoint-reconciler-type=none: it would otherwise complain that 127.0.0.1 is a
# loopback address it cannot publish as the "kubernetes" Service endpoint.
start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" --insecure-port 0 \
    --cert-dir "$PKI" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" \
    --authorization-mode RBAC --allow-privileged \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 --endpoint-reconciler-type none \
    --audit-policy-file "$DIR/audit-policy.yaml" --audit-log-path "$DIR/audit.log"
wait_for "kube-apiserver /readyz" curl -fsS --cacert "$PKI/ca.crt" \
    -H "Authorization: Bearer $ADMIN_TOKEN" "https://127.0.0.1:$API_PORT/readyz"

# --- kube-controller-manager. Per-controller SA credentials, or RBAC blocks its
# controllers; the SA private key + root CA, or pods get no token.
# --port/--secure-port 0: no serving at all, so parallel instances do not collide.
start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$DIR/kcm.kubeconfig" --leader-elect=false \
    --use-service-account-credentials \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --port 0 --secure-port 0
# Pods are rejected until namespace "default" has its ServiceAccount, so wait for it.
wait_for "default ServiceAccount (kube-controller-manager)" curl -fsS --cacert "$PKI/ca.crt" \
    -H "Authorization: Bearer $ADMIN_TOKEN" \
    "https://127.0.0.1:$API_PORT/api/v1/namespaces/default/serviceaccounts/default"

trap - ERR
echo "$DIR/kubeconfig"
