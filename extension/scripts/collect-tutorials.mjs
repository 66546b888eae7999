// Copy the tutorial notebooks (../../notebooks/*.ipynb) into the built extension's static folder
// with an index.json of {file, title}, so the launcher can list them and copy one on demand.
// Usage: node scripts/collect-tutorials.mjs [notebooks-folder] [target-folder]
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const source = process.argv[2] ?? join(here, '..', '..', 'notebooks');
const target =
  process.argv[3] ?? join(here, '..', '..', 'odelab', 'labextension', 'static', 'tutorials');
const FILE_NAME = /^[A-Za-z0-9_.-]{1,128}\.ipynb$/;

function titleOf(notebook, file) {
  for (const cell of notebook.cells ?? []) {
    if (cell.cell_type !== 'markdown') continue;
    const text = Array.isArray(cell.source) ? cell.source.join('') : String(cell.source ?? '');
    const heading = text.match(/^\s*#\s+(.+)$/m);
    if (heading) return heading[1].trim();
  }
  return file.replace(/\.ipynb$/, '').replace(/^\d+[-_]/, '').replace(/[-_]/g, ' ');
}

let files = [];
try {
  files = readdirSync(source).filter(name => FILE_NAME.test(name)).sort();
} catch {
  console.warn(`collect-tutorials: no ${source} folder, shipping no tutorials`);
}

rmSync(target, { recursive: true, force: true });
mkdirSync(target, { recursive: true });
const index = files.map(file => {
  const text = readFileSync(join(source, file), 'utf8');
  const notebook = JSON.parse(text);
  // Open with the Python kernel without asking, as the tutorials are Python notebooks.
  notebook.metadata = notebook.metadata ?? {};
  notebook.metadata.kernelspec = notebook.metadata.kernelspec ?? {
    name: 'python3',
    display_name: 'Python 3 (ipykernel)',
    language: 'python'
  };
  // Ship clean copies: outputs belong to the user's run, not to the package.
  for (const cell of notebook.cells ?? []) {
    if (cell.cell_type === 'code') {
      cell.outputs = [];
      cell.execution_count = null;
    }
  }
  writeFileSync(join(target, file), JSON.stringify(notebook, null, 1) + '\n');
  return { file, title: titleOf(notebook, file) };
});
writeFileSync(join(target, 'index.json'), JSON.stringify(index, null, 2) + '\n');
console.log(`collect-tutorials: ${index.length} tutorial(s) -> ${target}`);
