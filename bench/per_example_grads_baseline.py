"""PyTorch eager baseline for bench/per-example-grads.ts: per-example LoRA gradients on a Hugging
Face causal LM + PEFT LoRA model, same shapes, float32, same loss, same token ids.

Usage: python bench/per_example_grads_baseline.py '<json>'   (written by bench/per-example-grads.ts)

<json>: {"config": {HF LlamaConfig fields} | null, "gguf": path | null, "exchange": dir | null,
         "lora": {"r", "alpha", "targets"}, "batch", "seq", "threads", "iters",
         "variant": "vmap" | "loop", "ids": [[B × T]], "labels": [[B × T]] (-100 = not a target),
         "seed", "attn"}

Model: `config` → a random LlamaForCausalLM (random weights, so nothing is compared with LayerFlow);
`gguf` → AutoModelForCausalLM.from_pretrained(dir, gguf_file=name, dtype=float32): transformers
dequantises the GGUF (here Gemma 3 270M Q4_K_M) to float32, as LayerFlow's loadModel does. The load
is reported as load_s and not timed. With `exchange` (a directory the LayerFlow worker wrote:
meta.json + raw float32 files) the LoRA A/B values are LayerFlow's, and the gradients of the
warm-up batch are compared with LayerFlow's: max_rel_diff = max over LoRA tensors of
max |LayerFlow − PyTorch| / max |PyTorch| over the whole [B, ...] tensor; max_loss_diff = max over
samples of |Δ loss|.

Loss: mean token cross-entropy over target tokens with the HF shift (hidden[t] predicts ids[t+1];
labels -100 are not targets). As in LayerFlow's per-example graph, the LM head is applied only at
the target positions: the base model's last hidden state is indexed at those positions and then goes
through lm_head (final_logit_softcapping must be None, as for Gemma 3 270M and Llama). Every sample
must have the same number of targets K (the bench's batches do), so the positions vmap as a [B, K]
tensor. With every token a target K = T − 1.

Variants (one per process, so that the peak RSS belongs to that variant alone):
  vmap  torch.func: functional_call over the LoRA parameters only (the base weights stay frozen
        module state), grad_and_value of one sample's loss, vmap over the batch. One batched pass.
        Attention "eager" by default: SDPA's CPU flash kernel has no vmap batching rule in torch
        2.15 (functorch falls back to a per-sample loop and warns), eager attention is batched.
  loop  the naive way: for each sample a batch-of-one forward + loss.backward() (PEFT freezes the
        base weights, so autograd computes only LoRA weight gradients), gradients copied out.
        Attention "sdpa" by default (transformers' default; fastest for batch-of-one).
Timing: one warm-up batch, then `iters` timed batches; prints one JSON line with the seconds of
each timed batch, the peak RSS (resource.getrusage, KiB on Linux; load_rss_kib = the peak once the
model was loaded) and the library versions.
Threads: torch.set_num_threads(threads) and set_num_interop_threads(1) (ORT: intraOpNumThreads =
threads, interOpNumThreads = 1); the caller also sets OMP_NUM_THREADS / MKL_NUM_THREADS.
"""
import json
import os
import platform
import warnings
import resource
import sys
import time


def maxrss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main():
    args = json.loads(sys.argv[1])
    warnings.filterwarnings("ignore")
    import torch
    import torch.nn.functional as F
    import transformers
    import peft
    from peft import LoraConfig, get_peft_model
    from torch.func import functional_call, grad_and_value, vmap

    torch.set_num_threads(args["threads"])
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(args.get("seed", 0))
    B, T, iters, variant = args["batch"], args["seq"], args["iters"], args["variant"]
    attn = args.get("attn") or ("eager" if variant == "vmap" else "sdpa")

    load_s = load_rss = None
    t0 = time.perf_counter()
    if args.get("gguf"):
        from transformers import AutoModelForCausalLM
        path = args["gguf"]
        base = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32, attn_implementation=attn)
        load_s, load_rss = time.perf_counter() - t0, maxrss()
        t0 = time.perf_counter()
    else:
        from transformers import LlamaConfig, LlamaForCausalLM
        base = LlamaForCausalLM(LlamaConfig(**args["config"], attn_implementation=attn))  # random init
        base = base.float()
    base.eval()  # no dropout
    assert all(p.dtype == torch.float32 for p in base.parameters()), "expected float32 weights"
    assert getattr(base.config, "final_logit_softcapping", None) is None, "the head-at-targets loss assumes no logit soft-capping"
    lc = args["lora"]
    model = get_peft_model(base, LoraConfig(r=lc["r"], lora_alpha=lc["alpha"], target_modules=lc["targets"], lora_dropout=0.0, bias="none"))
    model.eval()
    lm = model.get_base_model()  # the *ForCausalLM with the LoRA layers injected
    inner, head = lm.model, lm.get_output_embeddings()
    # LoRA parameters by their name inside `inner` (for functional_call) and by LayerFlow's PEFT key.
    key_of = {id(p): n.replace(".default", "") for n, p in model.named_parameters()}
    lora = {n: p for n, p in inner.named_parameters() if p.requires_grad}
    keys = {n: key_of[id(p)] for n, p in lora.items()}
    ex = args.get("exchange")
    meta = None
    if ex:
        with open(os.path.join(ex, "meta.json")) as f:
            meta = json.load(f)
        files = {t["name"]: t for t in meta["tensors"]}

        def read(name):
            t = files[name]
            with open(os.path.join(ex, t["file"]), "rb") as f:
                return torch.frombuffer(bytearray(f.read()), dtype=torch.float32).reshape(t["shape"])
        with torch.no_grad():
            for n, p in lora.items():
                p.copy_(read("lora." + keys[n]))
        assert len(lora) == sum(1 for k in files if k.startswith("lora.")), "LoRA tensors differ between the sides"
    else:
        with torch.no_grad():  # non-zero B, as a fine-tuned adapter has (zero B would make A's gradients zero)
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.uniform_(-0.01, 0.01)
    setup_s = time.perf_counter() - t0

    ids = torch.tensor(args["ids"], dtype=torch.long)
    labels = torch.tensor(args["labels"], dtype=torch.long)
    assert tuple(ids.shape) == (B, T)
    # Target positions t (hidden[t] predicts labels[t + 1]) and their targets, [B, K].
    shifted = labels[:, 1:]
    valid = shifted != -100
    K = int(valid[0].sum())
    assert bool((valid.sum(1) == K).all()) and K > 0, "every sample needs the same number of targets"
    pos = torch.stack([valid[b].nonzero().flatten() for b in range(B)])
    tgt = torch.gather(shifted, 1, pos)

    def sample_loss(params, x, p, y):
        h = functional_call(inner, params, args=(), kwargs={"input_ids": x.unsqueeze(0), "use_cache": False}).last_hidden_state[0]
        return F.cross_entropy(head(h[p]), y)  # head on [K, D] → [K, V]

    per_sample = vmap(grad_and_value(sample_loss), in_dims=(None, 0, 0, 0))
    detached = {n: p.detach() for n, p in lora.items()}

    def step_vmap():
        return per_sample(detached, ids, pos, tgt)

    def step_loop():
        out = {n: torch.empty((B, *p.shape)) for n, p in lora.items()}
        losses = torch.empty(B)
        for b in range(B):
            for p in lora.values():
                p.grad = None
            h = inner(input_ids=ids[b:b + 1], use_cache=False).last_hidden_state[0]
            loss = F.cross_entropy(head(h[pos[b]]), tgt[b])
            loss.backward()
            losses[b] = loss.detach()
            for n, p in lora.items():
                out[n][b] = p.grad
        return out, losses

    step = step_vmap if variant == "vmap" else step_loop
    t0 = time.perf_counter()
    grads, losses = step()
    warm_s = time.perf_counter() - t0
    cmp = {}
    if meta is not None:
        worst, worst_name = 0.0, ""
        for n, g in grads.items():
            ours = read("grad." + keys[n])
            err = float((ours - g).abs().max() / g.abs().max().clamp_min(1e-30))
            if err >= worst:
                worst, worst_name = err, keys[n]
        cmp = {"max_rel_diff": worst, "worst_tensor": worst_name.replace("base_model.model.model.", ""),
               "max_loss_diff": float((torch.tensor(meta["losses"]) - losses.detach()).abs().max())}
    norm0 = float(sum(v[0].double().pow(2).sum() for v in grads.values()) ** 0.5)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if load_s is not None:
        cmp.update(load_s=load_s, load_rss_kib=load_rss)
    print(json.dumps({
        "variant": variant, "attn": attn, "times": times, "warmup_s": warm_s, "setup_s": setup_s,
        "max_rss_kib": maxrss(),
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
        "lora_tensors": len(lora), "lora_params": sum(p.numel() for p in lora.values()),
        "base_params": sum(p.numel() for n, p in model.named_parameters() if not p.requires_grad),
        "logits_shape": [K, head.weight.shape[0]], "grad_norm_sample0": norm0, **cmp,
        "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
        "python": platform.python_version(), "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }), flush=True)


if __name__ == "__main__":
    main()
