import { tf, type Tensor } from './tf.js';

/**
 * State is plain data: records (and arrays) of tensors. These helpers walk such trees so that
 * rules, trainers and tests can keep, dispose, detach or compare any neuron's state without
 * knowing its fields.
 *
 * `TensorTree` is the exact shape of such a tree (what a checkpoint stores). The helpers below
 * accept any tree-shaped value — interfaces such as `NetState` or a rule's state included, which
 * TypeScript does not let an index signature accept — and walk plain objects and arrays to their
 * tensors; any other value (numbers, strings, booleans, null, undefined, functions) is a leaf
 * without tensors.
 */
export type TensorTree = Tensor | number | string | boolean | null | undefined | readonly TensorTree[] | { readonly [key: string]: TensorTree };

/** Every tensor in a tree, depth first (plain numbers, strings and booleans are skipped). */
export function treeLeaves(tree: unknown, out: Tensor[] = []): Tensor[] {
  if (tree instanceof tf.Tensor) out.push(tree);
  else if (Array.isArray(tree)) for (const t of tree) treeLeaves(t, out);
  else if (tree !== null && typeof tree === 'object') for (const v of Object.values(tree)) treeLeaves(v, out);
  return out;
}

/** The same tree with every tensor replaced by `fn(tensor, path)` (paths like `layers[0].v`); plain values are kept. */
export function treeMap<T>(tree: T, fn: (t: Tensor, path: string) => Tensor, path = ''): T {
  return mapAny(tree, fn, path) as T;
}

function mapAny(tree: unknown, fn: (t: Tensor, path: string) => Tensor, path: string): unknown {
  if (tree instanceof tf.Tensor) return fn(tree, path);
  if (tree === null || typeof tree !== 'object') return tree;
  if (Array.isArray(tree)) return tree.map((t, i) => mapAny(t, fn, `${path}[${i}]`));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(tree)) out[k] = mapAny(v, fn, path ? `${path}.${k}` : k);
  return out;
}

/** Disposes every tensor of a tree (each once, even when shared), except those in `except`. */
export function disposeTree(tree: unknown, except?: unknown): void {
  const keep = new Set(except === undefined ? [] : treeLeaves(except));
  for (const t of new Set(treeLeaves(tree))) if (!keep.has(t) && !t.isDisposed) t.dispose();
}

/** Marks every tensor of a tree as kept, so an enclosing `tf.tidy` does not dispose it. */
export function keepTree<T>(tree: T): T {
  for (const t of treeLeaves(tree)) tf.keep(t);
  return tree;
}

/** A copy of a tree whose tensors are new tensors holding the same values. */
export function cloneTree<T>(tree: T): T {
  return treeMap(tree, (t) => t.clone());
}

/** `tf.tidy` for any tree-shaped result (tfjs' own typing accepts only its TensorContainer). */
export function tidy<T>(fn: () => T): T {
  return tf.tidy(fn as () => never) as T;
}
