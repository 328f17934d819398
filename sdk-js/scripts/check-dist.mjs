// Fails when the committed dist/ differs from what `npm run build` makes from src/ now: the server embeds
// dist/ at compile time, so a stale dist would ship old code.

import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const fresh = await mkdtemp(join(tmpdir(), "halley-dist-"));
try {
  execFileSync(process.execPath, [join(root, "scripts/build.mjs"), fresh], { stdio: ["ignore", "ignore", "inherit"] });
  const names = new Set([...(await readdir(fresh)), ...(await readdir(join(root, "dist")).catch(() => []))]);
  const stale = [];
  for (const name of [...names].sort()) {
    const a = await readFile(join(fresh, name)).catch(() => null);
    const b = await readFile(join(root, "dist", name)).catch(() => null);
    if (!a || !b || !a.equals(b)) stale.push(name);
  }
  if (stale.length) {
    console.error(`dist/ is stale (${stale.join(", ")}): run \`npm run build\` in sdk-js and commit dist/.`);
    process.exitCode = 1;
  } else {
    console.log(`dist/ is up to date (${names.size} files).`);
  }
} finally {
  await rm(fresh, { recursive: true, force: true });
}
