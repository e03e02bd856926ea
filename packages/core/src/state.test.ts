import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from './tf.js';
import { cloneTree, disposeTree, keepTree, tidy, treeLeaves, treeMap } from './state.js';
import { useCpuBackend } from './test-support.js';

useCpuBackend();

describe('tensor trees', () => {
  it('treeLeaves: every tensor depth first, duplicates kept, plain values skipped', () => {
    const [a, b, c] = [tf.scalar(1), tf.scalar(2), tf.scalar(3)];
    const tree = { x: a, n: 3, s: 'str', f: false, z: null, u: undefined, y: [b, { deep: [c, a] }, 7] };
    expect(treeLeaves(tree)).toEqual([a, b, c, a]);
    expect(treeLeaves(a)).toEqual([a]);
    expect(treeLeaves(null)).toEqual([]);
    expect(treeLeaves(5)).toEqual([]);
    const out: Tensor[] = [b];
    expect(treeLeaves([c], out)).toBe(out);
    expect(out).toEqual([b, c]);
    tf.dispose([a, b, c]);
  });

  it('treeMap keeps the structure and plain values, and passes each tensor its path', () => {
    const [a, b] = [tf.tensor1d([1, 2]), tf.tensor1d([3])];
    const paths: string[] = [];
    const mapped = treeMap({ a, list: [b, { c: a, n: 1 }], s: 'x' }, (t, path) => {
      paths.push(path);
      return tf.mul(t, 10);
    });
    expect(paths).toEqual(['a', 'list[0]', 'list[1].c']);
    expect(mapped.s).toBe('x');
    expect((mapped.list[1] as { n: number }).n).toBe(1);
    expect(Array.from(mapped.a.dataSync())).toEqual([10, 20]);
    expect(Array.from((mapped.list[0] as Tensor).dataSync())).toEqual([30]);
    disposeTree([mapped, a, b]);
  });

  it('disposeTree disposes each tensor once, even when shared, and keeps `except`', () => {
    const [a, b, c] = [tf.ones([2]), tf.zeros([2]), tf.ones([3])];
    const before = tf.memory().numTensors;
    const tree = { x: a, y: [a, b, { again: a }], z: c, n: 3 };
    disposeTree(tree, { keep: [c] });
    expect([a.isDisposed, b.isDisposed, c.isDisposed]).toEqual([true, true, false]);
    expect(tf.memory().numTensors).toBe(before - 2);
    // Already disposed tensors are skipped.
    expect(() => disposeTree(tree)).not.toThrow();
    expect(c.isDisposed).toBe(true);
    expect(tf.memory().numTensors).toBe(before - 3);
  });

  it('disposeTree on a tree of variables and plain values', () => {
    const v = tf.variable(tf.zeros([2]));
    const before = tf.memory().numTensors;
    disposeTree({ v, n: 1, s: 'x', nothing: null });
    expect(v.isDisposed).toBe(true);
    expect(tf.memory().numTensors).toBe(before - 1);
  });

  it('keepTree inside tf.tidy keeps the tree and nothing else', () => {
    const before = tf.memory().numTensors;
    let inner: Tensor | undefined;
    let tree: { a: Tensor; list: Tensor[]; n: number } | undefined;
    const returned = tf.tidy(() => {
      inner = tf.ones([2]);
      const t = { a: tf.add(inner, 1), list: [tf.mul(inner, 3)], n: 2 };
      expect(keepTree(t)).toBe(t);
      tree = t;
      tf.mul(inner, 5); // an intermediate: freed with the scope
      return tf.scalar(0);
    });
    expect(inner!.isDisposed).toBe(true);
    expect(tree!.a.isDisposed).toBe(false);
    expect(tree!.list[0]!.isDisposed).toBe(false);
    expect(Array.from(tree!.a.dataSync())).toEqual([2, 2]);
    expect(Array.from(tree!.list[0]!.dataSync())).toEqual([3, 3]);
    expect(tf.memory().numTensors).toBe(before + 3);
    disposeTree([tree!, returned]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('cloneTree copies the values into new tensors', () => {
    const a = tf.tensor1d([1, 2, 3]);
    const tree = { a, n: 4, l: [a] };
    const copy = cloneTree(tree);
    expect(copy.a).not.toBe(a);
    expect(copy.n).toBe(4);
    a.dispose();
    expect(Array.from(copy.a.dataSync())).toEqual([1, 2, 3]);
    expect(Array.from((copy.l[0] as Tensor).dataSync())).toEqual([1, 2, 3]);
    disposeTree(copy);
  });

  it('tidy returns any tree and frees the intermediates', () => {
    const before = tf.memory().numTensors;
    const out = tidy(() => {
      const x = tf.ones([2]);
      const y = tf.add(x, x);
      return { list: [tf.mul(y, 2)], nested: { t: tf.neg(y) }, label: 'ok', count: 3 };
    });
    expect(tf.memory().numTensors).toBe(before + 2);
    expect(out.label).toBe('ok');
    expect(out.count).toBe(3);
    expect(Array.from(out.list[0]!.dataSync())).toEqual([4, 4]);
    expect(Array.from(out.nested.t.dataSync())).toEqual([-2, -2]);
    disposeTree(out);
    expect(tf.memory().numTensors).toBe(before);
  });
});
