/**
 * Training: AdamW + cosine-with-warmup over plain Float32Arrays, a resumable loop with gradient
 * accumulation and best-validation checkpoints, and objectives backed by ONNX sessions.
 *
 *   const graph = buildTrainGraph({ config, lora });                         // src/models (adapters)
 *   //   or buildFullTrainGraph({ config })                                  // every weight (pretraining)
 *   const objective = await lmObjective({ graph, frozen: baseWeights, weighting: 'examples' });
 *   const { params, shapes } = weightsToParams(loraToWeights(initLora({ config, lora })));
 *   const r = await train({ objective, params, shapes, train, validation, epochs: 3, microBatchSize: 8,
 *     gradAccumulation: 4, lr: 2e-4, seed: 0, checkpointDir: dir });          // resumes from dir
 *   r.best.params  // lowest validation loss; also dir/best-<step>.safetensors (loadBestCheckpoint)
 *
 * Any `{ lossAndGrads({ params, examples }) → { loss, grads, weight? } }` works as the objective.
 */
export { adamwHyper, adamwStep, adamwStepInto, type AdamWConfig, type AdamWHyper, type AdamWStepArgs } from './adamw.ts';
export { cosineWithWarmup, warmupStepsOf, type CosineSchedule } from './schedule.ts';
export { createRng } from '../data/random.ts';
export * from './checkpoint.ts';
export * from './trainer.ts';
export { OnnxObjective, type OnnxObjectiveOptions } from './objective.ts';
export * from './lm.ts';
export * from './bpe.ts';
