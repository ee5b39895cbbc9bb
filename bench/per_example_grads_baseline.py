"""PyTorch eager baseline for bench/per-example-grads.ts: per-example LoRA gradients on a random
Hugging Face LlamaForCausalLM + PEFT LoRA model, same shapes, float32, same loss.

Usage: python bench/per_example_grads_baseline.py '<json>'   (written by bench/per-example-grads.ts)

<json>: {"config": {HF LlamaConfig fields}, "lora": {"r", "alpha", "targets"}, "batch", "seq",
         "threads", "iters", "variant": "vmap" | "loop", "seed", "attn"}

Variants (one per process, so that the peak RSS belongs to that variant alone):
  vmap  torch.func: functional_call over the LoRA parameters only (the base weights stay frozen
        module state), grad of one sample's loss, vmap over the batch. One batched pass.
        Attention "eager" by default: SDPA's CPU flash kernel has no vmap batching rule in torch
        2.15 (functorch falls back to a per-sample loop and warns), eager attention is batched.
  loop  the naive way: for each sample a batch-of-one forward + loss.backward() (PEFT freezes the
        base weights, so autograd computes only LoRA weight gradients), gradients copied out.
        Attention "sdpa" by default (transformers' default; fastest for batch-of-one).
Loss: mean token cross-entropy over target tokens with the HF shift (logits[t] predicts ids[t+1]);
every token is a target and the attention mask is all ones, as on the LayerFlow side.
Timing: one warm-up batch, then `iters` timed batches; prints one JSON line with the seconds of
each timed batch, the peak RSS (resource.getrusage, KiB on Linux) and the library versions.
Threads: torch.set_num_threads(threads) and set_num_interop_threads(1) (ORT: intraOpNumThreads =
threads, interOpNumThreads = 1); the caller also sets OMP_NUM_THREADS / MKL_NUM_THREADS.
"""
import json
import platform
import warnings
import resource
import sys
import time


def main():
    args = json.loads(sys.argv[1])
    warnings.filterwarnings("ignore")
    import torch
    import torch.nn.functional as F
    import transformers
    import peft
    from peft import LoraConfig, get_peft_model
    from torch.func import functional_call, grad, vmap
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args["threads"])
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(args.get("seed", 0))
    B, T, iters, variant = args["batch"], args["seq"], args["iters"], args["variant"]

    t0 = time.perf_counter()
    attn = args.get("attn") or ("eager" if variant == "vmap" else "sdpa")
    cfg = LlamaConfig(**args["config"], attn_implementation=attn)
    base = LlamaForCausalLM(cfg).float().eval()  # random init; eval(): no dropout
    lc = args["lora"]
    model = get_peft_model(base, LoraConfig(r=lc["r"], lora_alpha=lc["alpha"], target_modules=lc["targets"], lora_dropout=0.0, bias="none"))
    model.eval()
    with torch.no_grad():  # non-zero B, as a fine-tuned adapter has (zero B would make A's gradients zero)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.uniform_(-0.01, 0.01)
    lora = {n: p for n, p in model.named_parameters() if p.requires_grad}
    setup_s = time.perf_counter() - t0

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    labels = ids.clone()

    def sample_loss(params, x, y):
        logits = functional_call(model, params, args=(), kwargs={"input_ids": x.unsqueeze(0), "use_cache": False}).logits[0]
        return F.cross_entropy(logits[:-1], y[1:], ignore_index=-100)

    per_sample_grad = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    detached = {n: p.detach() for n, p in lora.items()}

    def step_vmap():
        return per_sample_grad(detached, ids, labels)

    def step_loop():
        out = {n: torch.empty((B, *p.shape)) for n, p in lora.items()}
        for b in range(B):
            for p in lora.values():
                p.grad = None
            logits = model(input_ids=ids[b:b + 1], use_cache=False).logits[0]
            F.cross_entropy(logits[:-1], labels[b, 1:], ignore_index=-100).backward()
            for n, p in lora.items():
                out[n][b] = p.grad
        return out

    step = step_vmap if variant == "vmap" else step_loop
    t0 = time.perf_counter()
    res = step()
    warm_s = time.perf_counter() - t0
    norm0 = float(sum(v[0].double().pow(2).sum() for v in res.values()) ** 0.5)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(json.dumps({
        "variant": variant, "attn": attn, "times": times, "warmup_s": warm_s, "setup_s": setup_s,
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
        "lora_tensors": len(lora), "lora_params": sum(p.numel() for p in lora.values()),
        "base_params": sum(p.numel() for n, p in model.named_parameters() if not p.requires_grad),
        "grad_norm_sample0": norm0,
        "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
        "python": platform.python_version(), "mkldnn": torch.backends.mkldnn.is_available(),
    }), flush=True)


if __name__ == "__main__":
    main()
