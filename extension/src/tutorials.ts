/**
 * Tutorial notebooks shipped with the extension, and notebooks created from a template.
 *
 * The build copies notebooks/*.ipynb and an index into the extension's static folder
 * (scripts/collect-tutorials.mjs). Opening a tutorial saves a copy into the file browser's folder
 * through the contents API and opens the copy: the installed file is never edited.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { PageConfig, PathExt, URLExt } from '@jupyterlab/coreutils';
import { Contents } from '@jupyterlab/services';

import { uniqueName } from './format';

export interface ITutorial {
  file: string;
  title: string;
}

const FILE_NAME = /^[A-Za-z0-9_.-]{1,128}\.ipynb$/;

function staticUrl(...parts: string[]): string {
  const base = PageConfig.getOption('fullLabextensionsUrl');
  return URLExt.join(base, 'odelab', 'static', 'tutorials', ...parts);
}

/** The tutorials listed in the built extension; empty if none were shipped. */
export async function listTutorials(): Promise<ITutorial[]> {
  const response = await fetch(staticUrl('index.json'), { credentials: 'same-origin' });
  if (!response.ok) {
    return [];
  }
  const index = (await response.json()) as unknown;
  if (!Array.isArray(index)) {
    return [];
  }
  return index.filter(
    (entry): entry is ITutorial =>
      typeof entry?.file === 'string' &&
      FILE_NAME.test(entry.file) &&
      typeof entry?.title === 'string'
  );
}

/** Save `content` as a new notebook named like `wanted` in `directory`; returns its path. */
export async function saveNewNotebook(
  contents: Contents.IManager,
  directory: string,
  wanted: string,
  content: unknown
): Promise<string> {
  const listing = await contents.get(directory, { content: true });
  const taken = new Set<string>(
    (listing.content as Contents.IModel[]).map(model => model.name)
  );
  const path = PathExt.join(directory, uniqueName(wanted, taken));
  await contents.save(path, { type: 'notebook', format: 'json', content });
  return path;
}

/** Copy a shipped tutorial into `directory` and open the copy. */
export async function openTutorial(
  app: JupyterFrontEnd,
  file: string,
  directory: string
): Promise<string> {
  if (!FILE_NAME.test(file)) {
    throw new Error(`odelab: ${JSON.stringify(file)} is not a tutorial file name`);
  }
  const response = await fetch(staticUrl(file), { credentials: 'same-origin' });
  if (!response.ok) {
    throw new Error(`odelab: tutorial ${file} is missing from the installed extension`);
  }
  const notebook = await response.json();
  const path = await saveNewNotebook(app.serviceManager.contents, directory, file, notebook);
  await app.commands.execute('docmanager:open', { path, factory: 'Notebook' });
  return path;
}

function cell(cellType: 'markdown' | 'code', source: string): object {
  const base = { cell_type: cellType, metadata: {}, source };
  return cellType === 'code' ? { ...base, execution_count: null, outputs: [] } : base;
}

/** A starter notebook: define a system, solve it, take a gradient, explore it. */
export function systemNotebookTemplate(): object {
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {
      kernelspec: { name: 'python3', display_name: 'Python 3 (ipykernel)', language: 'python' },
      language_info: { name: 'python' }
    },
    cells: [
      cell(
        'markdown',
        '# A new odelab system\n\nEdit the right-hand side, run the cells, and open the ' +
          'explorer from the odelab sidebar.'
      ),
      cell('code', 'import odelab as ol\nimport jax.numpy as jnp'),
      cell(
        'code',
        'def lotka_volterra(t, y, p):\n' +
          '    x, z = y\n' +
          '    return jnp.stack([p["a"] * x - p["b"] * x * z, -p["c"] * z + p["d"] * x * z])\n\n' +
          'predator_prey = ol.System(\n' +
          '    lotka_volterra,\n' +
          '    states=("prey", "predator"),\n' +
          '    params={"a": 1.1, "b": 0.4, "c": 0.4, "d": 0.1},\n' +
          '    y0=[10.0, 10.0],\n' +
          '    t_span=(0.0, 20.0),\n' +
          '    name="lotka-volterra",\n' +
          ')'
      ),
      cell('code', 'sol = ol.solve(predator_prey)\nsol'),
      cell(
        'code',
        'def loss(p):\n' +
          '    return ol.solve(predator_prey, params=p).ys[-1, 0]\n\n' +
          'ol.gradient(loss, predator_prey.params)'
      ),
      cell('code', 'ol.explore(predator_prey)')
    ]
  };
}
