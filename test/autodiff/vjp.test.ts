/** Every differentiable op's VJP against central finite differences (float64 unless noted). */
import test from 'ava';
import * as O from '../../src/onnx/index.ts';
import { grad } from '../../src/autodiff/index.ts';
import { i64 } from '../../src/runtime/index.ts';
import { fdCheck, param, type FdOptions } from './_fd.ts';

type Build = (g: O.GraphBuilder) => Omit<FdOptions, 'g'>;
const check = (name: string, build: Build) =>
  test(name, async (t) => {
    const g = new O.GraphBuilder({ name });
    await fdCheck(t, { g, ...build(g) });
  });

// Elementwise binary ops, with broadcasting in several directions.
const bshapes: [number[], number[]][] = [[[2, 3], [2, 3]], [[2, 3, 4], [3, 1]], [[4], [2, 3, 4]], [[1, 4], [3, 1]]];
const binops: [string, (a: O.Value, b: O.Value) => O.Value, number][] = [
  ['add', O.add, -1], ['sub', O.sub, -1], ['mul', O.mul, -1], ['div', O.div, 0.5], ['pow', O.pow, 0.5],
];
for (const [name, f, lo] of binops) {
  for (const [sa, sb] of bshapes) {
    check(`${name} [${sa}] x [${sb}]`, (g) => {
      const a = param(g, 'a', sa, 'float64', lo, 2), b = param(g, 'b', sb, 'float64', lo, 2);
      return { y: f(a.value, b.value), params: [a, b] };
    });
  }
}
check('binary op with a number operand (x / 3 - 2)', (g) => {
  const a = param(g, 'a', [2, 3]);
  return { y: O.sub(O.div(a.value, 3), 2), params: [a] };
});

// Unary ops.
const unops: [string, (x: O.Value) => O.Value, number, number][] = [
  ['neg', O.neg, -1, 1], ['sqrt', O.sqrt, 0.5, 2], ['reciprocal', O.reciprocal, 0.5, 2], ['exp', O.exp, -1, 1],
  ['log', O.log, 0.5, 2], ['tanh', O.tanh, -2, 2], ['sigmoid', O.sigmoid, -3, 3], ['identity', O.identity, -1, 1],
];
for (const [name, f, lo, hi] of unops) {
  check(name, (g) => {
    const x = param(g, 'x', [2, 3], 'float64', lo, hi);
    return { y: f(x.value), params: [x] };
  });
}
// onnxruntime's CPU Erf kernel is float32-only: checked in float32 with h = 1e-2, rtol 2e-2.
check('erf (float32)', (g) => {
  const x = param(g, 'x', [2, 3], 'float32', -1.5, 1.5);
  return { y: O.erf(x.value), params: [x] };
});
check('cast float32 -> float64', (g) => {
  const x = param(g, 'x', [2, 3], 'float32');
  return { y: O.mul(O.cast(x.value, 'float64'), O.cast(x.value, 'float64')), params: [x], h: 1 / 64, rtol: 1e-5, atol: 1e-6 };
});
check('where with broadcast condition and branches', (g) => {
  const c = g.input('c', 'float64', [2, 3]);
  const a = param(g, 'a', [3]), b = param(g, 'b', [2, 1]);
  return {
    y: O.where(O.greater(c, 0), a.value, b.value), params: [a, b],
    feeds: { c: { data: Float64Array.from([1, -1, 1, -1, -1, 1]), dims: [2, 3] } },
  };
});
check('where(less) and equal-masked blend', (g) => {
  const a = param(g, 'a', [2, 3]);
  const m = O.cast(O.equal(g.constant([1, 0, 1, 0, 1, 0], 'int64', [2, 3]), g.constant(1, 'int64')), 'float64');
  return { y: O.add(O.where(O.less(a.value, 0), O.neg(a.value), a.value), O.mul(m, a.value)), params: [a] };
});

// MatMul: plain, shared weight, batched broadcasting, per-example weights.
const mm: [number[], number[]][] = [
  [[3, 4], [4, 5]], [[2, 3, 4], [4, 5]], [[3, 4], [2, 4, 5]], [[2, 1, 3, 4], [5, 4, 2]], [[3, 2, 4], [3, 4, 2]],
];
for (const [sa, sb] of mm) {
  check(`matMul [${sa}] @ [${sb}]`, (g) => {
    const a = param(g, 'a', sa), b = param(g, 'b', sb);
    return { y: O.matMul(a.value, b.value), params: [a, b] };
  });
}
for (const transA of [0, 1] as const) {
  for (const transB of [0, 1] as const) {
    check(`gemm transA=${transA} transB=${transB} alpha=0.7 beta=1.3 C=[5]`, (g) => {
      const a = param(g, 'a', transA ? [4, 3] : [3, 4]), b = param(g, 'b', transB ? [5, 4] : [4, 5]), c = param(g, 'c', [5]);
      return { y: O.gemm(a.value, b.value, c.value, { alpha: 0.7, beta: 1.3, transA, transB }), params: [a, b, c] };
    });
  }
}

// Reductions and softmax.
for (const keep of [true, false]) {
  for (const axes of [[1], [0, 2], undefined]) {
    for (const [name, f] of [['reduceSum', O.reduceSum], ['reduceMean', O.reduceMean], ['reduceMax', O.reduceMax]] as const) {
      check(`${name} axes=${axes ?? 'all'} keepdims=${keep}`, (g) => {
        const x = param(g, 'x', [2, 3, 4]);
        return { y: f(x.value, axes, keep), params: [x] };
      });
    }
  }
}
for (const axis of [-1, 1]) {
  check(`softmax axis=${axis}`, (g) => {
    const x = param(g, 'x', [2, 3, 4], 'float64', -2, 2);
    return { y: O.softmax(x.value, axis), params: [x] };
  });
  check(`logSoftmax axis=${axis}`, (g) => {
    const x = param(g, 'x', [2, 3, 4], 'float64', -2, 2);
    return { y: O.logSoftmax(x.value, axis), params: [x] };
  });
}
// The loss head's form: a log-softmax and the gathered target entries. LogSoftmax's VJP sees the
// gather's scatter-into-zeros and scatters into the softmax term instead (one tensor, no zeros).
for (const axis of [-1, 1]) {
  check(`cross-entropy pick: gatherElements(logSoftmax) axis=${axis}`, (g) => {
    const x = param(g, 'x', [2, 3, 5], 'float64', -3, 3);
    const ids = axis === -1 ? g.constant([4, 0, 4, 2, 1, 3], 'int64', [2, 3, 1]) : g.constant([2, 0, 1, 1, 2, 0, 0, 2, 1, 2], 'int64', [2, 1, 5]);
    return { y: O.gatherElements(O.logSoftmax(x.value, axis), ids, axis === -1 ? 2 : 1), params: [x] };
  });
}
check('gather result used twice: dense gradient plus a scatter-add into the same tensor', (g) => {
  const x = param(g, 'x', [3, 4], 'float64', -2, 2);
  const ids = g.constant([1, 1, 0, 3, 2, 2], 'int64', [3, 2]);
  return { y: O.add(O.reduceSum(O.mul(x.value, x.value), [1], true), O.gatherElements(x.value, ids, 1)), params: [x] };
});
check('topK k=2 axis=-1 (values)', (g) => {
  const x = param(g, 'x', [3, 5]);
  return { y: O.topK(x.value, 2)[0], params: [x] };
});
check('topK k=2 axis=0 smallest', (g) => {
  const x = param(g, 'x', [4, 3]);
  return { y: O.topK(x.value, 2, { axis: 0, largest: false })[0], params: [x] };
});

// Gather / scatter (indices repeat, so the add-accumulation matters).
check('gather axis=0 (embedding rows, repeated ids)', (g) => {
  const e = param(g, 'emb', [5, 3]);
  const ids = g.input('ids', 'int64', [2, 3]);
  return { y: O.gather(e.value, ids, 0), params: [e], feeds: { ids: i64([1, 4, 1, 0, 1, 3], [2, 3]) } };
});
check('gather axis=1 with 2-D indices', (g) => {
  const x = param(g, 'x', [2, 4, 3]);
  return { y: O.gather(x.value, g.constant([3, 0, 3, 1], 'int64', [2, 2]), 1), params: [x] };
});
check('gatherElements axis=1 (cross-entropy pick)', (g) => {
  const x = param(g, 'x', [3, 4]);
  return { y: O.gatherElements(x.value, g.constant([1, 1, 0, 3, 2, 2], 'int64', [3, 2]), 1), params: [x] };
});
check('gatherND', (g) => {
  const x = param(g, 'x', [3, 4]);
  return { y: O.gatherND(x.value, g.constant([2, 0, 2], 'int64', [3, 1])), params: [x] };
});
for (const reduction of ['none', 'add'] as const) {
  check(`scatterElements reduction=${reduction}`, (g) => {
    const d = param(g, 'd', [3, 4]), u = param(g, 'u', [3, 2]);
    const idx = reduction === 'none' ? [0, 2, 3, 1, 1, 2] : [0, 0, 3, 1, 2, 2];
    return { y: O.scatterElements(d.value, g.constant(idx, 'int64', [3, 2]), u.value, { axis: 1, reduction }), params: [d, u] };
  });
  check(`scatterND reduction=${reduction}`, (g) => {
    const d = param(g, 'd', [4, 3]), u = param(g, 'u', [2, 3]);
    const idx = reduction === 'none' ? [3, 1] : [1, 1];
    return { y: O.scatterND(d.value, g.constant(idx, 'int64', [2, 1]), u.value, reduction), params: [d, u] };
  });
}

// Shape ops.
check('reshape [2,3,4] -> [6,-1] -> [4,0,... ]', (g) => {
  const x = param(g, 'x', [2, 3, 4]);
  return { y: O.mul(O.reshape(x.value, [6, -1]), O.reshape(x.value, [6, 4])), params: [x] };
});
check('transpose perm [2,0,1]', (g) => {
  const x = param(g, 'x', [2, 3, 4]);
  return { y: O.transpose(x.value, [2, 0, 1]), params: [x] };
});
check('concat of three on axis 1', (g) => {
  const a = param(g, 'a', [2, 1, 3]), b = param(g, 'b', [2, 2, 3]), c = param(g, 'c', [2, 3, 3]);
  return { y: O.concat([a.value, b.value, c.value], 1), params: [a, b, c] };
});
check('split then product of parts', (g) => {
  const x = param(g, 'x', [2, 5]);
  const [p, q] = O.split(x.value, [2, 3], 1);
  return { y: O.matMul(O.transpose(p), q), params: [x] };
});
check('slice with negative start and axes', (g) => {
  const x = param(g, 'x', [3, 6]);
  return { y: O.slice(x.value, { starts: [-4, 1], ends: [5, 3], axes: [1, 0] }), params: [x] };
});
check('pad', (g) => {
  const x = param(g, 'x', [2, 3]);
  return { y: O.pad(x.value, [1, 0, 0, 2]), params: [x] };
});
check('unsqueeze / squeeze', (g) => {
  const x = param(g, 'x', [2, 3]);
  return { y: O.mul(O.reduceSum(O.unsqueeze(x.value, [0, 3]), [3], false), O.squeeze(O.unsqueeze(x.value, [1]), [1])), params: [x] };
});
check('expand [3,1] -> [2,3,4]', (g) => {
  const x = param(g, 'x', [3, 1]);
  return { y: O.expand(x.value, [2, 3, 4]), params: [x] };
});

// Symbolic batch dim: gradients go through runtime Shape/Reshape/Pad paths.
test('symbolic dims: broadcasting, reshape, slice, concat, reduceMean', async (t) => {
  const g = new O.GraphBuilder();
  const x = g.input('x', 'float64', ['batch', 4]);
  const b = param(g, 'b', [4]);
  const h = O.add(x, b.value);
  const r = O.reshape(h, [-1, 2, 2]);
  const s = O.slice(r, { starts: [1], ends: [2], axes: [2] });
  const c = O.concat([h, O.neg(x)], 0); // concat along a symbolic axis: sizes found at run time
  const y = O.mul(O.mul(O.reduceMean(O.reshape(s, O.shapeOf(s)), [0], false), O.reduceSum(h, [0], true)), O.reduceMax(c, [0]));
  t.deepEqual(y.shape, [2, 4]);
  await fdCheck(t, { g, y, params: [{ value: x, data: [0.1, -0.4, 0.3, 0.9, -0.2, 0.5, 0.7, -0.6, 0.2, 0.3, -0.8, 0.4], dims: [3, 4] }, b] });
});

// The same rules in float32 (training dtype): confirms ORT has float32 kernels for each gradient graph.
const f32cases: [string, (x: O.Value, g: O.GraphBuilder) => O.Value][] = [
  ['gather axis=0', (x, g) => O.gather(x, g.constant([2, 0, 2], 'int64', [3]), 0)],
  ['gather axis=1', (x, g) => O.gather(x, g.constant([3, 3], 'int64', [2]), 1)],
  ['slice + concat + pad', (x) => O.pad(O.concat([O.slice(x, { starts: [1], ends: [3], axes: [1] }), x], 1), [0, 1, 0, 0])],
  ['reduceMax + reduceMean', (x) => O.add(O.reduceMax(x, [1]), O.reduceMean(x, [0]))],
  ['div broadcast + expand', (x) => O.div(O.expand(O.reduceSum(x, [0]), [2, 3, 4]), O.add(O.mul(x, x), 1))],
  ['scatterND + gatherND', (x, g) => O.scatterND(x, g.constant([1], 'int64', [1, 1]), O.gatherND(O.exp(x), g.constant([0], 'int64', [1, 1])))],
];
for (const [name, f] of f32cases) {
  check(`${name} (float32)`, (g) => {
    const x = param(g, 'x', [3, 4], 'float32');
    return { y: f(x.value, g), params: [x] };
  });
}

test('cross-entropy gradient graph: one scatter-add into the softmax term, no zeros tensor or difference', (t) => {
  const g = new O.GraphBuilder();
  const x = g.input('x', 'float32', [2, 3, 5]);
  const ids = g.constant([4, 0, 4, 2, 1, 3], 'int64', [2, 3, 1]);
  const nll = O.neg(O.reduceSum(O.gatherElements(O.logSoftmax(x, -1), ids, 2)));
  const before = g.nodes.length;
  const [gx] = grad({ loss: nll, wrt: [x] });
  const made = g.nodes.slice(before).map((n) => n.def.type);
  t.is(made.filter((k) => k === 'ScatterElements').length, 1, made.join(' '));
  t.false(made.includes('ConstantOfShape'), made.join(' '));
  t.false(made.includes('Sub'), made.join(' '));
  const last = g.producer(gx);
  t.is(last?.def.type, 'ScatterElements');
  t.is(g.producer(last!.inputs[0]!)?.def.type, 'Mul');
});
