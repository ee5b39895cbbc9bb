# Shared by the fetch scripts (sourced): logging with the script's tag and a portable sha256.
# The caller sets TAG (e.g. fetch-models) and PY (a python3) before sourcing.
say() { echo "[layerflow $TAG] $*"; }
die() { say "$*" >&2; exit 1; }
sha256() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null; then shasum -a 256 "$1" | cut -d' ' -f1
  else "$PY" -c 'import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],"rb"); [h.update(b) for b in iter(lambda: f.read(1<<20), b"")]; print(h.hexdigest())' "$1"
  fi
}
