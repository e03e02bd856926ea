import { tf, type Tensor } from './tf.js';

/**
 * State is plain data: records (and arrays) of tensors. These helpers walk such trees so that
 * rules, trainers and tests can keep, dispose, detach or compare any neuron's state without
 * knowing its fields.
 */
export type TensorTree = Tensor | number | string | boolean | null | undefined | readonly TensorTree[] | { readonly [key: string]: TensorTree };

/** Every tensor in a tree, depth first (plain numbers, strings and booleans are skipped). */
export function treeLeaves(tree: TensorTree, out: Tensor[] = []): Tensor[] {
  if (tree instanceof tf.Tensor) out.push(tree);
  else if (Array.isArray(tree)) for (const t of tree) treeLeaves(t as TensorTree, out);
  else if (tree !== null && typeof tree === 'object') for (const v of Object.values(tree as Record<string, TensorTree>)) treeLeaves(v, out);
  return out;
}

export function treeMap<T extends TensorTree>(tree: T, fn: (t: Tensor, path: string) => Tensor, path = ''): T {
  if (tree instanceof tf.Tensor) return fn(tree, path) as T;
  if (tree === null || typeof tree !== 'object') return tree;
  if (Array.isArray(tree)) return tree.map((t, i) => treeMap(t as TensorTree, fn, `${path}[${i}]`)) as unknown as T;
  const out: Record<string, TensorTree> = {};
  for (const [k, v] of Object.entries(tree as Record<string, TensorTree>)) out[k] = treeMap(v, fn, path ? `${path}.${k}` : k);
  return out as T;
}

/** Disposes every tensor of a tree (each once, even when shared), except those in `except`. */
export function disposeTree(tree: TensorTree, except?: TensorTree): void {
  const keep = new Set(except ? treeLeaves(except) : []);
  for (const t of new Set(treeLeaves(tree))) if (!keep.has(t) && !t.isDisposed) t.dispose();
}

/** Marks every tensor of a tree as kept, so an enclosing `tf.tidy` does not dispose it. */
export function keepTree<T extends TensorTree>(tree: T): T {
  for (const t of treeLeaves(tree)) tf.keep(t);
  return tree;
}

export function cloneTree<T extends TensorTree>(tree: T): T {
  return treeMap(tree, (t) => t.clone());
}

/** `tf.tidy` for any tree-shaped result (tfjs' own typing accepts only its TensorContainer). */
export function tidy<T>(fn: () => T): T {
  return tf.tidy(fn as () => never) as T;
}
