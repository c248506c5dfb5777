// Builds what ironrender vendors for the viewer in report.html: three.js and the add-ons it
// uses as one minified script (window.IRONTHREE), with three.js's licence and version beside it.
// Run `npm ci && npm run build` here after changing the three.js version, and commit the result.
import { build } from "esbuild";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";

const out = "../ironrender/assets/viewer";
await build({
  entryPoints: ["src/three-entry.js"],
  bundle: true,
  minify: true,
  format: "iife",
  globalName: "IRONTHREE",
  legalComments: "none", // the licence travels as three.LICENSE and inside the report
  outfile: `${out}/three.bundle.min.js`,
});
copyFileSync("node_modules/three/LICENSE", `${out}/three.LICENSE`);
const { version } = JSON.parse(readFileSync("node_modules/three/package.json", "utf8"));
writeFileSync(`${out}/three.version.json`, JSON.stringify({ version }) + "\n");
