// Vite builds the console (index.html) and the bundled GraphiQL (playground.html) into dist/,
// which the Go package embeds. `npm run dev` serves them with /graphql (and its websocket) and
// /dev/token proxied to a running pizza (PIZZA_URL, default http://127.0.0.1:8080).
import { defineConfig } from "vite";

const target = process.env.PIZZA_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0, // every asset a file: the CSP allows no data: URLs
    modulePreload: { polyfill: false },
    sourcemap: false,
    reportCompressedSize: true,
    chunkSizeWarningLimit: 4096, // GraphiQL's editor is big; the console is measured by build-info (and a test)
    rolldownOptions: {
      input: { index: "index.html", playground: "playground.html" },
      // GraphiQL's React packages mark modules "use client", which means nothing outside a
      // server-components framework: not worth a warning each.
      onwarn(warning, warn) {
        if (warning.code !== "MODULE_LEVEL_DIRECTIVE") warn(warning);
      },
    },
  },
  server: {
    proxy: {
      "/graphql": { target, ws: true, changeOrigin: false },
      "/dev/token": { target },
    },
  },
});
