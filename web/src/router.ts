// The console's pages and a small history-API router. The list of paths is src/routes.json, which
// the Go handler serves index.html for; nothing else is a page.
import { useEffect, useState } from "preact/hooks";
import table from "./routes.json";
import type { Role } from "./session";

export type Page = "home" | "signin" | "customer" | "agent" | "master" | "admin-stores" | "admin-orders" | "admin-system" | "notfound";

interface Route {
  path: string;
  page: Page;
  roles?: Role[];
}

const routes = table.routes as Route[];

export function match(pathname: string): Route {
  return routes.find((r) => r.path === pathname) ?? { path: pathname, page: "notfound" };
}

const listeners = new Set<() => void>();

export function navigate(to: string, replace = false) {
  if (to === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  listeners.forEach((l) => l());
}

addEventListener("popstate", () => listeners.forEach((l) => l()));

export function useLocation(): { path: string; query: URLSearchParams } {
  const [, bump] = useState(0);
  useEffect(() => {
    const l = () => bump((n) => n + 1);
    listeners.add(l);
    return () => void listeners.delete(l);
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

// Link: an <a> that navigates without reloading (and still works opened in a new tab).
export function onLinkClick(e: MouseEvent) {
  const a = e.currentTarget as HTMLAnchorElement;
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.origin !== location.origin) return;
  e.preventDefault();
  navigate(a.pathname + a.search);
}
