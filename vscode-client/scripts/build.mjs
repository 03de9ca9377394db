// Bundles the extension into one file so the .vsix needs no node_modules and activates fast
// (one file to read instead of hundreds of small ones).
import * as esbuild from "esbuild";

const production = process.argv.includes("--production");
const watch = process.argv.includes("--watch");

const options = {
  entryPoints: ["src/extension.ts"],
  bundle: true,
  outfile: "out/extension.js",
  format: "cjs",
  platform: "node",
  target: "node20",
  external: ["vscode"],
  sourcemap: !production,
  minify: production,
  logLevel: "info",
  // First and last statements of the bundle: extension.ts logs how long evaluating it took, apart
  // from the wait inside VS Code before activate() is called, and from activate() itself.
  // ("use strict" first, so the bundle stays strict-mode code.)
  banner: { js: '"use strict"; var __waferlineBundleStartMs = performance.now(), __waferlineBundleEndMs;' },
  footer: { js: "__waferlineBundleEndMs = performance.now();" },
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
