// After `vite build`: writes dist/build-info.json, the SHA-256 of the console's sources (the
// list below, the same as web/web.go's sourceFiles; a Go test recomputes it, so a committed bundle
// not built from the current sources fails `go test ./web/`), and the console's JavaScript size.
// Run from web/.
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { gzipSync } from "node:zlib";

const repo = join(process.cwd(), "..");

// The sources, as paths relative to the repository root (directories: every file beneath).
const sources = [
  "graph/*.graphqls",
  "web/index.html",
  "web/playground.html",
  "web/playground",
  "web/src",
  "web/scripts",
  "web/package.json",
  "web/package-lock.json",
  "web/tsconfig.json",
  "web/vite.config.ts",
  "web/codegen.ts",
];

function expand(pattern) {
  if (pattern.endsWith("*.graphqls")) {
    const dir = pattern.slice(0, pattern.lastIndexOf("/"));
    return readdirSync(join(repo, dir))
      .filter((f) => f.endsWith(".graphqls"))
      .map((f) => `${dir}/${f}`);
  }
  const abs = join(repo, pattern);
  if (!statSync(abs).isDirectory()) return [pattern];
  const out = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(relative(repo, p).split(sep).join("/"));
    }
  };
  walk(abs);
  return out;
}

// The hash: over the sorted paths, each "path NUL sha256(content) LF".
const files = [...new Set(sources.flatMap(expand))].sort();
const h = createHash("sha256");
for (const f of files) {
  h.update(`${f}\0${createHash("sha256").update(readFileSync(join(repo, f))).digest("hex")}\n`);
}

// The console's JavaScript: every script index.html loads or preloads, gzipped.
const dist = join(process.cwd(), "dist");
const index = readFileSync(join(dist, "index.html"), "utf8");
const scripts = [...index.matchAll(/(?:src|href)="\/(assets\/[^"]+\.js)"/g)].map((m) => m[1]);
const jsGzip = scripts.reduce((n, s) => n + gzipSync(readFileSync(join(dist, s)), { level: 9 }).length, 0);

const info = { sourcesSha256: h.digest("hex"), sources: files, consoleScripts: scripts, consoleScriptsGzipBytes: jsGzip };
writeFileSync(join(dist, "build-info.json"), JSON.stringify(info, null, 2) + "\n");
console.log(`build-info: sources ${info.sourcesSha256.slice(0, 12)}…, console JavaScript ${(jsGzip / 1024).toFixed(1)} KiB gzipped`);
