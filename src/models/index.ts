/**
 * Model graphs (Llama family, Gemma 3, GPT-2) with LoRA / LoRA-MoE adapters, built on src/onnx
 * and src/autodiff from an HF ModelConfig.
 *
 *   const spec = buildPerExampleGradGraph({ config, lora: { r: 4, alpha: 4, targets: ['q_proj', 'v_proj'] } });
 *   const runner = await PerExampleGradRunner.create({ graph: spec, device: 'cuda:0' });
 *   const weights = loraToWeights(initLora({ config, lora }), (await loadHfModel(dir)).weights);
 *   const { losses, grads } = await runner.run({ weights, batch: padBatch(samples) });
 *   grads.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight') // Float32Array [B × r·in]
 *
 * Training: buildTrainGraph({ config, lora }) → `loss` + `grad.<name>` per trainable tensor
 * (spec.trainable); feed with feedsFor(spec, weights, batch) on a createSession.
 * Names: weights use HF keys, LoRA tensors PEFT keys (base_model.model.<module>.lora_{A,B}.weight),
 * so adapters round-trip with src/weights/peft.ts (loraToWeights / weightsToLora).
 * Loading a model (HF folder or GGUF) with its tokenizer in one call: loadModel (./load.ts).
 */
export { ModelContext, type ContextOptions, type FloatDType, type WeightMap } from './context.ts';
export * from './graphs.ts';
export * from './load.ts';
export * from './lora.ts';
export * from './loss.ts';
export * from './moe.ts';
export * from './runner.ts';
export { transformer, lmHead, classificationHead, embedName, lmHeadName } from './transformer.ts';
export * from './weights-io.ts';
