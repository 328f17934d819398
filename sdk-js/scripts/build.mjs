// Builds the committed dist/ files that the server embeds: halley.mjs (ES module), halley.js (classic script
// with the original's globals) and halley.d.ts (hand-written types, copied). The output depends only on src/
// and the pinned esbuild version, so `npm run check-dist` can rebuild and compare byte for byte.
//
//   node scripts/build.mjs [outdir]     (default: dist)

import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const outdir = resolve(root, process.argv[2] || "dist");
const { SDK_VERSION, API_VERSION } = await import(join(root, "src/version.js"));

const banner =
  `/*! Halley browser SDK ${SDK_VERSION} (comet-server JS API ${API_VERSION} compatible).` +
  ` Generated from sdk-js/src by \`npm run build\`: do not edit. */`;

const common = {
  // Paths in the output's module comments are relative to this, not to wherever the command was started.
  absWorkingDir: root,
  bundle: true,
  charset: "utf8",
  legalComments: "none",
  target: "es2020",
  platform: "browser",
  banner: { js: banner },
  logLevel: "warning",
};

await mkdir(outdir, { recursive: true });
await build({ ...common, entryPoints: [join(root, "src/index.js")], format: "esm", outfile: join(outdir, "halley.mjs") });
await build({ ...common, entryPoints: [join(root, "src/classic.js")], format: "iife", outfile: join(outdir, "halley.js") });
await copyFile(join(root, "src/halley.d.ts"), join(outdir, "halley.d.ts"));
console.log("built " + outdir);
