#!/usr/bin/env bash
# Fetch the downstream benchmark data LayerFlow's real-task configs and tests use, pinned and verified.
# Idempotent: when every pinned file is already in place with its pinned sha256, nothing is fetched.
#   BIG-bench task files (SCIENCE.md §3d), from the PyPI source distribution bigbench==1.0.0
#   (Apache-2.0), downloaded with pip so it uses the same index/proxy as install.sh. pip runs in
#   hash-checking mode (--require-hashes), so the sdist is verified against BIGBENCH_SDIST_SHA256
#   *before* pip prepares its metadata (the only code of the package that ever runs); the package is
#   not built or installed. Only the task.json members listed in BIGBENCH_FILES are extracted, to
#   ${LAYERFLOW_HOME:-<repo>/.layerflow}/data/bigbench/<task>[/<subtask>]/task.json
#   (src/eval/bigbench.ts: loadBigBenchTask).
# Tasks: social_iqa, strategyqa, winowhy, sports_understanding, physical_intuition (multiple choice,
# one task.json each); logical_deduction, a composite task (its top-level task.json has no examples)
# with the subtasks three_objects, five_objects, seven_objects; english_proverbs (34 examples, some
# with several correct options), small enough for fast CI tests; object_counting (generative: 1000
# examples with targets such as ["three", "3"], scored by exact match of a greedy answer).
# Each extracted file is written to a temporary name, checked against its pinned sha256, and renamed
# into place only once verified.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOME_DIR=${LAYERFLOW_HOME:-$ROOT/.layerflow}
PY=${PYTHON:-python3}

BIGBENCH_PKG=bigbench==1.0.0
BIGBENCH_SDIST=bigbench-1.0.0.tar.gz
BIGBENCH_SDIST_SHA256=1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2
BIGBENCH_PREFIX=bigbench-1.0.0/bigbench/benchmark_tasks
BIGBENCH_DIR=$HOME_DIR/data/bigbench
# sha256 <path under benchmark_tasks/>
BIGBENCH_FILES="
edc9f568b70ae6d4af0783764dbe4e4f18aa1242c675a93f534338d73a565348 social_iqa/task.json
60af9081fed20102fd8bb1e02dc7d9f12238efcba33e4c1a56b4d61cb6409803 strategyqa/task.json
c36fa38ab146fd7cc60e9f4b7a34c979c5ffbcb4a6870302bf8d785fbe64d1f6 winowhy/task.json
925617612d19ca02d7b13bfb263300cc13701dca8851151a77be8ce986feadab sports_understanding/task.json
dd1e8e8fe97e08d064788eed8fb0f1bd13013d5fa028617bdf418685f4ca726f physical_intuition/task.json
850891a86223962cedb44591662e719844dcb80f50bcd953dea2df3b7125ba79 logical_deduction/task.json
5e3f4a7569cb70bb1469374d3d34fb7883445a9d5743e1a81fd8dcdaf6fcb40f logical_deduction/three_objects/task.json
552dec4d5067bdbe033e78e80fdf1f5a8061d17b385379b8ec5104fa17d07918 logical_deduction/five_objects/task.json
5e24146d600b1b2e2d8958e23851e7c958b1a7644a2540fa0de7fa3e51a68cf7 logical_deduction/seven_objects/task.json
86a39838d34f3583f77f998b6bfc1aa7f2a6e3fa94eb34b433e688565332fdc9 english_proverbs/task.json
ec6371b4d9078a871ef6962d4991d2318db0b399cca78a0c90678972bdb115d6 object_counting/task.json
"

TAG=fetch-data
# shellcheck source=infra/lib.sh
source "$ROOT/infra/lib.sh"

missing=()
while read -r want rel; do
  [ -n "$rel" ] || continue
  file=$BIGBENCH_DIR/$rel
  if [ -f "$file" ] && [ "$(sha256 "$file")" = "$want" ]; then continue; fi
  [ -e "$file" ] && say "bigbench: $file has the wrong sha256; fetching it again"
  missing+=("$rel")
done <<< "$BIGBENCH_FILES"
if [ ${#missing[@]} -eq 0 ]; then
  say "bigbench: all pinned task files already present and verified under $BIGBENCH_DIR"
  exit 0
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/layerflow-fetch-data.XXXXXX")
trap 'rm -rf "$TMP"; rm -f "$BIGBENCH_DIR"/*/task.json.part.$$ "$BIGBENCH_DIR"/*/*/task.json.part.$$' EXIT

say "bigbench: fetching $BIGBENCH_PKG (about 360 MB) for ${#missing[@]} task file(s)"
echo "$BIGBENCH_PKG --hash=sha256:$BIGBENCH_SDIST_SHA256" > "$TMP/requirements.txt"
"$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary=:all: --require-hashes \
  -r "$TMP/requirements.txt" -d "$TMP" \
  || die "pip download $BIGBENCH_PKG failed (no network, no package index, or a sha256 mismatch?)"
SDIST=$TMP/$BIGBENCH_SDIST
[ -f "$SDIST" ] || die "pip download $BIGBENCH_PKG did not produce $BIGBENCH_SDIST (got: $(ls "$TMP"))"
got=$(sha256 "$SDIST")
[ "$got" = "$BIGBENCH_SDIST_SHA256" ] || die "$BIGBENCH_SDIST: sha256 is $got; expected $BIGBENCH_SDIST_SHA256"

# One pass over the archive: write each wanted member to <dest>.part.<pid>.
"$PY" - "$SDIST" "$BIGBENCH_PREFIX" "$BIGBENCH_DIR" "$$" "${missing[@]}" <<'EOF' || die "cannot extract the task files from $BIGBENCH_SDIST"
import os, shutil, sys, tarfile
sdist, prefix, dest, pid, *wanted = sys.argv[1:]
left = set(wanted)
with tarfile.open(sdist, "r:gz") as tar:
    for m in tar:
        rel = m.name[len(prefix) + 1:] if m.name.startswith(prefix + "/") else None
        if rel not in left or not m.isfile():
            continue
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with tar.extractfile(m) as src, open(f"{out}.part.{pid}", "wb") as f:
            shutil.copyfileobj(src, f, 1 << 20)
        left.discard(rel)
        if not left:
            break
if left:
    sys.exit(f"not in the archive: {', '.join(sorted(left))}")
EOF

while read -r want rel; do
  [ -n "$rel" ] || continue
  part=$BIGBENCH_DIR/$rel.part.$$
  [ -f "$part" ] || continue
  got=$(sha256 "$part")
  [ "$got" = "$want" ] || die "$rel: sha256 is $got; expected $want"
  mv -f "$part" "$BIGBENCH_DIR/$rel"
  say "bigbench: verified, wrote $BIGBENCH_DIR/$rel"
done <<< "$BIGBENCH_FILES"
