import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { SpikeflowError } from '@spikeflow/core';

/** Reads a JSON or YAML config file (by extension), with errors that name the file and the position. */
export async function readConfigFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new SpikeflowError('CONFIG_INVALID', `cannot read config file ${path}: ${(cause as Error).message}`, { path }, { cause });
  }
  const ext = extname(path).toLowerCase();
  try {
    return ext === '.yaml' || ext === '.yml' ? parseYaml(text) : JSON.parse(text);
  } catch (cause) {
    throw new SpikeflowError(
      'CONFIG_INVALID',
      `config file ${path} is not valid ${ext === '.yaml' || ext === '.yml' ? 'YAML' : 'JSON'}: ${(cause as Error).message}`,
      { path },
      { cause },
    );
  }
}
