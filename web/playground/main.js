// GraphiQL at /playground, bundled (React, GraphiQL and Monaco's workers from npm, served by the
// binary: no CDN). It talks to /graphql: HTTP for queries and mutations, graphql-ws
// (graphql-transport-ws) for subscriptions, with the Authorization header of its Headers pane
// (prefilled with the console's token when this tab is signed in to the console).
import "graphiql/setup-workers/vite";
import "graphiql/style.css";
import "./playground.css";
import { createElement } from "react";
import { createRoot } from "react-dom/client";
import { GraphiQL } from "graphiql";
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { createClient } from "graphql-ws";

const wsURL = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/graphql";

// One websocket per Authorization value: a new token in the Headers pane opens a new socket.
let ws = null;
let wsAuth = null;
function socketFor(headers) {
  const auth = (headers && (headers.Authorization ?? headers.authorization)) || "";
  if (!ws || auth !== wsAuth) {
    ws?.dispose();
    wsAuth = auth;
    ws = createClient({ url: wsURL, connectionParams: auth ? { Authorization: auth } : {} });
  }
  return ws;
}

function isSubscription(doc, name) {
  const ops = (doc?.definitions ?? []).filter((d) => d.kind === "OperationDefinition");
  const op = name ? ops.find((d) => d.name?.value === name) : ops.length === 1 ? ops[0] : undefined;
  return op?.operation === "subscription";
}

const http = createGraphiQLFetcher({ url: "/graphql" });

function fetcher(params, opts) {
  if (!isSubscription(opts?.documentAST, params.operationName)) return http(params, opts);
  const socket = socketFor(opts?.headers);
  return {
    subscribe(observer) {
      const sink = {
        next: (v) => observer.next?.(v),
        error: (e) => observer.error?.(e instanceof Error ? e : new Error(e?.reason || e?.message || String(e))),
        complete: () => observer.complete?.(),
      };
      return { unsubscribe: socket.subscribe(params, sink) };
    },
  };
}

let token = "";
try {
  token = sessionStorage.getItem("pizza.token") || "";
} catch {
  // no storage
}

const defaultQuery = `# 1588-pizza's GraphQL API (docs/api.md).
# Headers, below: {"Authorization": "Bearer <token>"}
# (make run prints a token per role; signed in to the
# console in this tab, yours is there already).

query Stores {
  stores { id name region open }
}
`;

createRoot(document.getElementById("graphiql")).render(
  createElement(GraphiQL, {
    fetcher,
    defaultQuery,
    initialHeaders: token ? JSON.stringify({ Authorization: `Bearer ${token}` }, null, 2) : undefined,
    shouldPersistHeaders: false, // a token stays out of localStorage
    defaultEditorToolsVisibility: "headers",
  }),
);
