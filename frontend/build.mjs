// Build the console's JS bundles into decision_server/console/static/ (committed, so that
// `pip install` never needs Node). `npm ci && npm run build` gives byte-identical files on every
// machine: exact pins and the lockfile fix the inputs, and esbuild writes no dates or paths.
// CI rebuilds and fails when the committed bundles differ.
import { readFileSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const outdir = here("../decision_server/console/static/");

function version(name) {
  return JSON.parse(readFileSync(here(`node_modules/${name}/package.json`), "utf8")).version;
}

// The bundled packages and their licences, named at the top of each bundle (their own licence
// comments are not all marked for keeping).
function banner(packages) {
  const named = packages.map(([name, licence]) => `${name} ${version(name)} (${licence})`).join(", ");
  return `/*! decision-server console, built by frontend/build.mjs from frontend/src (do not edit). Bundles ${named}. */`;
}

const bundles = [
  { entry: "src/console.js", out: "console.js", packages: [["htmx.org", "0BSD"]] },
  {
    entry: "src/charts/index.js",
    out: "charts.js",
    packages: [
      ["echarts", "Apache-2.0"],
      ["zrender", "BSD-3-Clause"],
      ["tslib", "0BSD"],
    ],
  },
  {
    entry: "src/editor/index.js",
    out: "editor.js",
    packages: [
      "codemirror",
      "@codemirror/autocomplete",
      "@codemirror/commands",
      "@codemirror/lang-yaml",
      "@codemirror/language",
      "@codemirror/lint",
      "@codemirror/merge",
      "@codemirror/search",
      "@codemirror/streamparser",
      "@codemirror/state",
      "@codemirror/view",
      "@lezer/common",
      "@lezer/highlight",
      "@lezer/lr",
      "@lezer/yaml",
      "@marijn/find-cluster-break",
      "crelt",
      "style-mod",
      "w3c-keyname",
    ].map((name) => [name, "MIT"]),
  },
];

// The packages whose code a bundle holds, from esbuild's metafile: the banner must name each one.
function bundled(metafile) {
  const names = new Set();
  for (const input of Object.keys(metafile.inputs)) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (match) names.add(match[1]);
  }
  return [...names].sort();
}

for (const bundle of bundles) {
  const outfile = `${outdir}${bundle.out}`;
  const result = await build({
    entryPoints: [here(bundle.entry)],
    outfile,
    bundle: true,
    minify: true,
    format: "iife",
    target: ["es2020"],
    platform: "browser",
    charset: "utf8",
    legalComments: "none",
    banner: { js: banner(bundle.packages) },
    define: { "process.env.NODE_ENV": '"production"' }, // drops ECharts' development checks and warnings
    logLevel: "warning",
    metafile: true,
  });
  const named = new Set(bundle.packages.map(([name]) => name));
  const unnamed = bundled(result.metafile).filter((name) => !named.has(name));
  if (unnamed.length) throw new Error(`${bundle.out} bundles ${unnamed.join(", ")}: name them (and their licences) in build.mjs`);
  console.log(`${bundle.out}: ${(statSync(outfile).size / 1024).toFixed(0)} KiB`);
}
