// useLive keeps a list of rows live: it subscribes once the rows are loaded, with `seen` computed
// from the rows the page holds each time graphql-ws (re)subscribes, and subscribes again a
// moment after the server ends the subscription with an error it may recover from (a
// subscriber that fell behind, a service away): the replay then brings what it missed.
import { useSubscription } from "@urql/preact";
import type { AnyVariables, TypedDocumentNode } from "@urql/core";
import { useEffect, useMemo, useRef } from "preact/hooks";
import type { LiveContext } from "./client";
import { codeOf } from "./errors";

const fatal = new Set(["UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND"]);

export function useLive<D, V extends AnyVariables>(
  query: TypedDocumentNode<D, V>,
  variables: V,
  rows: readonly { orderId: string; version: number }[] | undefined,
) {
  const held = useRef(rows ?? []);
  held.current = rows ?? [];
  const context = useMemo<LiveContext>(
    () => ({ seen: () => held.current.map((r) => ({ orderId: r.orderId, version: r.version })) }),
    [],
  );
  const [live, resubscribe] = useSubscription({ query, variables, pause: rows === undefined, context });
  const error = live.error;
  useEffect(() => {
    if (!error || fatal.has(codeOf(error))) return;
    const id = setTimeout(() => resubscribe({ requestPolicy: "network-only" }), 1000);
    return () => clearTimeout(id);
  }, [error]);
  return live;
}
