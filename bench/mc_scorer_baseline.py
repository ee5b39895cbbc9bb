"""PyTorch eager baseline for bench/mc-scorer.ts: multiple-choice option log-likelihoods with a
Hugging Face LlamaForCausalLM loaded from the same GGUF file, on the same token ids.

Usage: python bench/mc_scorer_baseline.py '<json>'   (written by bench/mc-scorer.ts)

<json>: {"gguf": path of the .gguf file, "requests": path of a JSON file written by the LayerFlow
         worker ({"requests": [{"contextIds", "continuationIds"}, ...], "calls": [[start, end], ...],
         "maxLength": n}), "threads", "batch", "repeats", "variant": "harness" | "gathered"}

The requests are LayerFlow's own encoding (LoglikelihoodScorer.encode), so tokenisation plays no
part in the comparison. They are scored the way LoglikelihoodScorer.scoreEncoded does, call by
call (`calls`: the request ranges the benchmark stage passes to one scoreChoiceDocs call, 8 documents
each): input = (context + continuation)[-(maxLength + 1):][:-1], requests sorted longest input
first (ties by index), batches of `batch` right-padded with id 0 and attention mask 0, the
continuation's log-probs summed, plus the greedy check (argmax at every scored position).

Variants (one per process):
  harness   what lm-evaluation-harness's HFLM does: the full [B, T, V] logits of the model's
            forward, log_softmax over all of them, then the scored positions picked out.
  gathered  the same work as LayerFlow's graph: the decoder's hidden states gathered at the scored
            positions, the LM head and log_softmax applied to those [B, K] positions only.
Timing: one warm-up call (the first `calls` entry) timed separately, then `repeats` timed passes
over every call; prints one JSON line with the seconds of each pass, the log-likelihoods of the
last pass (request order), the peak RSS (KiB) and the library versions.
Threads: torch.set_num_threads(threads), set_num_interop_threads(1) (ORT: intraOpNumThreads =
threads, interOpNumThreads = 1); the caller also sets OMP_NUM_THREADS / MKL_NUM_THREADS.
"""
import json
import os
import platform
import resource
import sys
import time
import warnings


def main():
    args = json.loads(sys.argv[1])
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args["threads"])
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    variant, bs, repeats = args["variant"], args["batch"], args["repeats"]

    with open(args["requests"]) as f:
        spec = json.load(f)
    reqs, calls, max_len = spec["requests"], spec["calls"], spec["maxLength"]

    t0 = time.perf_counter()
    gguf = args["gguf"]
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf), dtype=torch.float32)
    model.eval()
    setup_s = time.perf_counter() - t0

    # Plans as LoglikelihoodScorer.scoreEncoded makes them.
    plans = []
    for i, r in enumerate(reqs):
        ctx, cont = r["contextIds"], r["continuationIds"]
        full = (ctx + cont)[-(max_len + 1):]
        plans.append((i, full[:-1], cont))

    def forward_batch(chunk):
        B = len(chunk)
        T = max(len(p[1]) for p in chunk)
        K = max(len(p[2]) for p in chunk)
        ids = torch.zeros((B, T), dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        pos = torch.zeros((B, K), dtype=torch.long)
        tgt = torch.full((B, K), -100, dtype=torch.long)
        for b, (_, inp, cont) in enumerate(chunk):
            ids[b, :len(inp)] = torch.tensor(inp)
            mask[b, :len(inp)] = 1
            start = len(inp) - len(cont)
            pos[b, :len(cont)] = torch.arange(start, len(inp))
            tgt[b, :len(cont)] = torch.tensor(cont)
        ignored = tgt == -100
        safe = tgt.masked_fill(ignored, 0)
        rows = torch.arange(B)[:, None]
        if variant == "harness":
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits  # [B, T, V]
            logp = torch.log_softmax(logits, dim=-1)
            picked = logp[rows, pos, safe]  # [B, K]
            greedy = logits[rows, pos].argmax(-1)
        else:
            hidden = model.model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state  # [B, T, D]
            logits = model.lm_head(hidden[rows, pos])  # [B, K, V]
            picked = torch.log_softmax(logits, dim=-1).gather(-1, safe[..., None])[..., 0]
            greedy = logits.argmax(-1)
        picked = picked.masked_fill(ignored, 0.0)
        lls = picked.double().sum(-1)
        is_greedy = ((greedy == tgt) | ignored).all(-1)
        return [(p[0], float(lls[b]), bool(is_greedy[b])) for b, p in enumerate(chunk)]

    def score_call(start, end, out):
        order = sorted(plans[start:end], key=lambda p: (-len(p[1]), p[0]))
        for s in range(0, len(order), bs):
            for i, ll, g in forward_batch(order[s:s + bs]):
                out[i] = (ll, g)

    out = [None] * len(reqs)
    with torch.inference_mode():
        t0 = time.perf_counter()
        score_call(*calls[0], out)
        warm_s = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            out = [None] * len(reqs)
            t0 = time.perf_counter()
            for c in calls:
                score_call(*c, out)
            times.append(time.perf_counter() - t0)

    import gguf as gguf_pkg  # noqa: F401  (version only)
    from importlib.metadata import version
    print(json.dumps({
        "variant": variant, "times": times, "warmup_s": warm_s, "setup_s": setup_s,
        "lls": [o[0] for o in out], "greedy": [o[1] for o in out],
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
        "attn": model.config._attn_implementation,
        "torch": torch.__version__, "transformers": transformers.__version__, "gguf": version("gguf"),
        "python": platform.python_version(),
    }), flush=True)


if __name__ == "__main__":
    main()
