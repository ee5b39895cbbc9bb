"""NumPy baseline for bench/influence.ts: the same formulas (SCIENCE.md §2) on the same gradients.

Usage: python bench/influence_baseline.py DIR [--serve]   (DIR written by bench/influence.ts)

DIR/meta.json: {"units": [...], "n", "m", "d", "reps", "methods", "association"}
DIR/train_<unit>.f32 [n × d], DIR/val_<unit>.f32 [m × d]: raw little-endian float32, row-major.

One-shot mode: for each (path, method) one warm-up on unit 0 (its result written to
DIR/np_<path>_<method>.f64 for the agreement check), then `reps` timed runs over all units; prints
one JSON line with the median seconds. --serve (used by bench/influence.ts, so that LayerFlow and
NumPy runs interleave and share the machine's drift): prints {"ready": ...}, then answers each stdin
line "warm PATH METHOD" (unit 0, writes the .f64) or "rep PATH METHOD" (all units, timed) with one
JSON line; "quit" ends.
Threads: the caller sets OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS.
"""
import json
import os
import platform
import sys
import time

import numpy as np


def full_matrix(method, V, G, assoc):
    """[m × n]: TracIn V Gᵀ; cosine; DataInf (1/λ)[V Gᵀ − (1/n)(V Gᵀ) diag(1/(λ+‖g‖²)) (G Gᵀ)]."""
    P = V @ G.T
    if method == "tracin":
        return P
    gn = np.einsum("ij,ij->i", G, G)
    if method == "cosine":
        vn = np.einsum("ij,ij->i", V, V)
        den = np.sqrt(vn)[:, None] * np.sqrt(gn)[None, :]
        return np.divide(P, den, out=np.zeros_like(P), where=den > 0)
    n = G.shape[0]
    # float32 scalar: a float64 λ would promote W and turn W @ G into a float64 product.
    lam = np.float32(0.1 * gn.sum(dtype=np.float64) / G.size)
    W = P / (lam + gn)[None, :]
    C = (W @ G) @ G.T if assoc == "projection" else W @ (G @ G.T)
    return (P - C / np.float32(n)) / lam


def mean_scores(method, V, G):
    """One score per training sample against the mean validation gradient; DataInf via r = Σ w_i g_i."""
    v = V.mean(axis=0)
    P = G @ v
    if method == "tracin":
        return P
    gn = np.einsum("ij,ij->i", G, G)
    if method == "cosine":
        den = np.sqrt(v @ v) * np.sqrt(gn)
        return np.divide(P, den, out=np.zeros_like(P), where=den > 0)
    n = G.shape[0]
    lam = np.float32(0.1 * gn.sum(dtype=np.float64) / G.size)
    r = (P / (lam + gn)) @ G
    return (P - (G @ r) / np.float32(n)) / lam


def blas_name():
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        return f"{b.get('name')} {b.get('version', '')}".strip()
    except Exception:  # older numpy
        return "unknown"


def blas_kernel():
    """The BLAS library and the kernel it dispatches to (OpenBLAS: its core type, e.g. SkylakeX or
    Haswell), from threadpoolctl when it is installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (pip install threadpoolctl to see it)"
    parts = [f"{i.get('internal_api')} {i.get('version')} {i.get('architecture', '')}".strip()
             for i in threadpool_info() if i.get("user_api") == "blas"]
    return "; ".join(parts) or "none loaded"


def read_bandwidth():
    """A plain streaming read of 1 GiB of float32 (larger than the last-level caches seen here):
    x @ ones, one sgemv, which reads each value once; GB/s, median of 5."""
    x = np.ones((65536, 4096), dtype=np.float32)
    v = np.ones(4096, dtype=np.float32)
    x @ v
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        x @ v
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return x.nbytes / ts[2] / 1e9


def main():
    d = sys.argv[1]
    meta = json.load(open(os.path.join(d, "meta.json")))
    n, m, dim = meta["n"], meta["m"], meta["d"]
    data = []
    for u in meta["units"]:
        G = np.fromfile(os.path.join(d, f"train_{u}.f32"), dtype="<f4").reshape(n, dim)
        V = np.fromfile(os.path.join(d, f"val_{u}.f32"), dtype="<f4").reshape(m, dim)
        data.append((V, G))
    fns = {"full": lambda meth, V, G: full_matrix(meth, V, G, meta["association"]), "mean": mean_scores}

    def warm(path, meth):
        out = fns[path](meth, *data[0])
        out.astype(np.float64).tofile(os.path.join(d, f"np_{path}_{meth}.f64"))

    def rep(path, meth):
        t0 = time.perf_counter()
        for V, G in data:
            fns[path](meth, V, G)
        return time.perf_counter() - t0

    info = {"numpy": np.__version__, "python": platform.python_version(), "blas": blas_name(),
            "threads": os.environ.get("OPENBLAS_NUM_THREADS"), "blas_kernel": blas_kernel(),
            "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}}
    if "--serve" in sys.argv:
        print(json.dumps({"ready": True, **info}), flush=True)
        for line in sys.stdin:
            cmd = line.split()
            if not cmd or cmd[0] == "quit":
                break
            if cmd[0] == "readbw":
                print(json.dumps({"gbps": read_bandwidth()}), flush=True)
                continue
            if cmd[0] == "warm":
                warm(cmd[1], cmd[2])
                print(json.dumps({"ok": True}), flush=True)
            else:
                print(json.dumps({"seconds": rep(cmd[1], cmd[2])}), flush=True)
        return
    seconds = {}
    for path in fns:
        for meth in meta["methods"]:
            warm(path, meth)
            times = sorted(rep(path, meth) for _ in range(meta["reps"]))
            seconds[f"{path}:{meth}"] = times[len(times) // 2]
    print(json.dumps({**info, "seconds": seconds}))


if __name__ == "__main__":
    main()
