#!/usr/bin/env bash
# Build the Kubernetes control-plane test binaries from source (no Docker, no images).
#
#   tests/testenv/build.sh                  build what is missing or stale, print the time taken
#   tests/testenv/build.sh --check          exit 0 when every binary is built and up to date
#   tests/testenv/build.sh --print-bin-dir  print the directory holding the binaries, build nothing
#   tests/testenv/build.sh --update-module  rewrite go.mod/go.sum after changing the versions below
#
# kube-apiserver, kubectl, etcd and the node's binaries (kubelet, kube-controller-manager,
# kube-scheduler, kube-proxy) are built from the Go module beside this script (go.mod lists them
# as tools, so go.sum pins every dependency). helm and CoreDNS are built with `go install` on
# their own, so their dependency graphs never mix with Kubernetes' replace lines.
#
# Binaries:  ${AGENTPERSISTENCE_CACHE:-$HOME/.cache/agentpersistence}/testenv/<k8s-version>/bin/
# Go caches: ${AGENTPERSISTENCE_CACHE:-$HOME/.cache/agentpersistence}/go/{mod,build}
# A binary is rebuilt only when its stamp (versions, go.mod/go.sum digest, flags) changes.
set -euo pipefail

K8S_VERSION=v1.34.4   # k8s.io/kubernetes; its staging modules are k8s.io/* v0.34.4
ETCD_VERSION=v3.6.4   # go.etcd.io/etcd/server/v3, the etcd that Kubernetes v1.34 pins
HELM_VERSION=v3.19.5  # helm.sh/helm/v3, built against k8s.io/* v0.34
COREDNS_VERSION=v1.12.4  # github.com/coredns/coredns: cluster DNS of the e2e tier's node
# The control plane of the controlplane tier, then what the e2e tier's node adds.
BINARIES=(etcd kube-apiserver kubectl helm kubelet kube-controller-manager kube-scheduler kube-proxy coredns)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${AGENTPERSISTENCE_CACHE:-$HOME/.cache/agentpersistence}"
BIN_DIR="$CACHE/testenv/$K8S_VERSION/bin"
K8S_MINOR="$(echo "$K8S_VERSION" | cut -d. -f2)"
STAGING_VERSION="v0.$K8S_MINOR.$(echo "$K8S_VERSION" | cut -d. -f3)"

log() { printf '[testenv] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

go_env() {
  export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
  export GOFLAGS="-modcacherw -buildvcs=false" GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0
  command -v go >/dev/null || die "go is not on PATH (Go >= 1.24 is needed)"
}

k8s_ldflags() {
  local pkg flags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR"
    flags+=" -X $pkg.gitTreeState=archive -X $pkg.buildDate=${BUILD_DATE}"
  done
  echo "$flags"
}

helm_ldflags() {
  local flags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=archive"
  flags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
  flags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$K8S_MINOR"
  flags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
  flags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$K8S_MINOR"
  echo "$flags"
}

# The stamp names everything that shapes a binary except the build date.
stamp_for() {
  local name="$1" digest
  digest="$(cat "$HERE/go.mod" "$HERE/go.sum" | sha256sum | cut -c1-16)"
  case "$name" in
    helm) echo "helm $HELM_VERSION $(BUILD_DATE=- helm_ldflags)" ;;
    coredns) echo "coredns $COREDNS_VERSION -s -w" ;;
    *) echo "$name k8s=$K8S_VERSION etcd=$ETCD_VERSION mod=$digest $(BUILD_DATE=- k8s_ldflags)" ;;
  esac
}

is_fresh() {
  local name="$1"
  [[ -x "$BIN_DIR/$name" && -f "$BIN_DIR/.$name.stamp" ]] &&
    [[ "$(cat "$BIN_DIR/.$name.stamp")" == "$(stamp_for "$name")" ]]
}

# Runs in the background; the trap also ends the pending sleep, which would otherwise outlive
# the build and keep the caller's output pipe open for up to a minute.
heartbeat() {
  local name="$1" start="$2"
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  while true; do
    sleep 60 >/dev/null 2>&1 &
    sleeper=$!
    wait "$sleeper"
    log "  ... still building $name ($((SECONDS - start))s)"
  done
}

# Prints a line every minute so a long first build does not look hung.
with_heartbeat() {
  local name="$1" start="$SECONDS" beat status=0
  shift
  heartbeat "$name" "$start" &
  beat=$!
  "$@" || status=$?
  kill "$beat" 2>/dev/null || true
  wait "$beat" 2>/dev/null || true
  return "$status"
}

build_module_tool() {
  local name="$1" pkg="$2" ldflags="$3"
  (cd "$HERE" && go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$BIN_DIR/.$name.tmp" "$pkg")
}

# `go install` of a module's command on its own, outside the Kubernetes module. Chained with
# && because errexit is off inside with_heartbeat's `"$@" || status=$?`.
install_alone() {
  local name="$1" pkg="$2" ldflags="$3" gobin="$BIN_DIR/.$1-gobin"
  mkdir -p "$gobin" &&
    (cd "$BIN_DIR" && GOBIN="$gobin" go install -trimpath -ldflags "$ldflags" "$pkg") &&
    mv "$gobin/$name" "$BIN_DIR/.$name.tmp" &&
    rmdir "$gobin"
}

build_one() {
  local name="$1" start="$SECONDS"
  if is_fresh "$name"; then
    log "$name: up to date"
    return 0
  fi
  log "$name: building ..."
  case "$name" in
    kube-apiserver) with_heartbeat "$name" build_module_tool "$name" k8s.io/kubernetes/cmd/kube-apiserver "$(k8s_ldflags)" ;;
    kubectl) with_heartbeat "$name" build_module_tool "$name" k8s.io/kubernetes/cmd/kubectl "$(k8s_ldflags)" ;;
    etcd) with_heartbeat "$name" build_module_tool "$name" go.etcd.io/etcd/server/v3 "-s -w" ;;
    helm) with_heartbeat "$name" install_alone helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$(helm_ldflags)" ;;
    kubelet | kube-controller-manager | kube-scheduler | kube-proxy)
      with_heartbeat "$name" build_module_tool "$name" "k8s.io/kubernetes/cmd/$name" "$(k8s_ldflags)" ;;
    coredns) with_heartbeat "$name" install_alone coredns "github.com/coredns/coredns@$COREDNS_VERSION" "-s -w" ;;
  esac
  mv "$BIN_DIR/.$name.tmp" "$BIN_DIR/$name"
  stamp_for "$name" >"$BIN_DIR/.$name.stamp"
  log "$name: built in $((SECONDS - start))s"
}

check_module_versions() {
  if ! grep -Eq "^\s+k8s.io/kubernetes $K8S_VERSION( |\$)" "$HERE/go.mod" ||
    ! grep -Eq "^\s+go.etcd.io/etcd/server/v3 $ETCD_VERSION( |\$)" "$HERE/go.mod"; then
    die "go.mod does not match K8S_VERSION=$K8S_VERSION/ETCD_VERSION=$ETCD_VERSION: run $0 --update-module"
  fi
}

check_all() {
  local name stale=0
  for name in "${BINARIES[@]}"; do
    is_fresh "$name" || { log "$name: missing or stale"; stale=1; }
  done
  return "$stale"
}

build_all() {
  local start="$SECONDS" name
  check_module_versions
  go_env
  mkdir -p "$BIN_DIR"
  BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  log "Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION, CoreDNS $COREDNS_VERSION -> $BIN_DIR"
  for name in "${BINARIES[@]}"; do
    build_one "$name"
  done
  log "done in $((SECONDS - start))s"
}

# Staging modules are the k8s.io/* modules that k8s.io/kubernetes replaces with ./staging/...
staging_modules() {
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
  sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod"
}

write_go_mod() {
  local module
  {
    echo "// Generated by build.sh --update-module: the Go module that pins the control-plane test binaries."
    echo "module agentpersistence.test/testenv"
    echo
    echo "go 1.24.0"
    echo
    echo "tool ("
    echo "	go.etcd.io/etcd/server/v3"
    echo "	k8s.io/kubernetes/cmd/kube-apiserver"
    echo "	k8s.io/kubernetes/cmd/kube-controller-manager"
    echo "	k8s.io/kubernetes/cmd/kube-proxy"
    echo "	k8s.io/kubernetes/cmd/kube-scheduler"
    echo "	k8s.io/kubernetes/cmd/kubectl"
    echo "	k8s.io/kubernetes/cmd/kubelet"
    echo ")"
    echo
    echo "require ("
    echo "	go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    echo "	k8s.io/kubernetes $K8S_VERSION"
    echo ")"
    echo
    echo "replace ("
    for module in $(staging_modules); do
      echo "	$module => $module $STAGING_VERSION"
    done
    echo ")"
  } >"$HERE/go.mod.new"
  mv "$HERE/go.mod.new" "$HERE/go.mod"
}

update_module() {
  go_env
  log "regenerating go.mod for Kubernetes $K8S_VERSION (staging $STAGING_VERSION), etcd $ETCD_VERSION"
  write_go_mod
  rm -f "$HERE/go.sum"
  (cd "$HERE" && go mod tidy)
  log "go.mod and go.sum updated; review and commit them"
}

case "${1:-}" in
  --check) check_all ;;
  --print-bin-dir) echo "$BIN_DIR" ;;
  --update-module) update_module ;;
  "") build_all ;;
  *) die "unknown argument: $1 (expected nothing, --check, --print-bin-dir or --update-module)" ;;
esac
