// Removes from dist/ what no source in src/ compiles to any more. `tsc -b` never deletes the output of a source that was
// removed or renamed, and `npm pack` would ship it: prepack runs this after the build. Only such files go, so that what
// reads dist/ meanwhile (the repository's tests run the built library) is never without a file it needs.
import { existsSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, URL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const OUTPUTS = /\.(js|js\.map|d\.ts|d\.ts\.map)$/;

/** Prunes `dir` (relative to dist/); true when it is left empty. */
function prune(dir) {
  let left = 0;
  for (const entry of readdirSync(join(root, 'dist', dir), { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (prune(path)) rmdirSync(join(root, 'dist', path));
      else left++;
    } else if (OUTPUTS.test(entry.name) && !existsSync(join(root, 'src', path.replace(OUTPUTS, '.ts')))) {
      rmSync(join(root, 'dist', path));
      console.error(`prune-dist: removed dist/${path} (its source is gone)`);
    } else {
      left++;
    }
  }
  return left === 0;
}

if (existsSync(join(root, 'dist'))) prune('');
