// Bundles app/javascript/application.js (Stimulus, the seed's presence controller,
// the Action Cable consumer) into one file with esbuild, as jsbundling-rails would.
//
//   node build.mjs [outfile]        (default dist/application.js)
//
// `bundle()` takes esbuild as an argument so that tests/e2e can build this same page
// with its own node_modules (passed as `nodePaths`).

import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

export const entryPoint = join(here, "app/javascript/application.js");
export const defaultOutfile = join(here, "dist/application.js");

export async function bundle(esbuild, { outfile = defaultOutfile, nodePaths = [] } = {}) {
  await esbuild.build({
    entryPoints: [entryPoint],
    outfile,
    bundle: true,
    format: "iife",
    platform: "browser",
    target: "es2020",
    sourcemap: "inline",
    nodePaths,
    logLevel: "warning",
  });
  return outfile;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const esbuild = await import("esbuild");
  const out = await bundle(esbuild, { outfile: process.argv[2] ? resolve(process.argv[2]) : defaultOutfile });
  console.log(`bundled ${out}`);
}
