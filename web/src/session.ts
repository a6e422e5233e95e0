// The signed-in session: the bearer token and what it says. The token lives in sessionStorage
// (this tab only, gone when it closes) and in memory; never in a URL or localStorage.

export type Role = "CUSTOMER" | "AGENT" | "MASTER" | "ADMIN";
export const roles: Role[] = ["CUSTOMER", "AGENT", "MASTER", "ADMIN"];

export interface Session {
  token: string;
  role: Role;
  customerId?: string; // a CUSTOMER's own id
  storeId?: string; // a MASTER's store
  expiresAt?: number; // ms since the epoch
}

const key = "pizza.token";

// decode reads a JWT's claims (without verifying it: the server does) into a Session, or throws
// a message fit to show.
export function decode(token: string): Session {
  token = token.trim().replace(/^bearer\s+/i, "");
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("not a JWT");
  let claims: Record<string, unknown>;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64 + "===".slice((b64.length + 3) % 4)), (c) => c.charCodeAt(0));
    claims = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new Error("not a JWT");
  }
  const role = claims.role as Role;
  if (!roles.includes(role)) throw new Error("no role");
  return {
    token,
    role,
    customerId: typeof claims.customerId === "string" ? claims.customerId : undefined,
    storeId: typeof claims.storeId === "string" ? claims.storeId : undefined,
    expiresAt: typeof claims.exp === "number" ? claims.exp * 1000 : undefined,
  };
}

export function expired(s: Session, now = Date.now()): boolean {
  return s.expiresAt !== undefined && s.expiresAt <= now;
}

export function load(): Session | null {
  try {
    const t = sessionStorage.getItem(key);
    if (!t) return null;
    const s = decode(t);
    return expired(s) ? null : s;
  } catch {
    return null;
  }
}

export function save(s: Session | null) {
  try {
    if (s) sessionStorage.setItem(key, s.token);
    else sessionStorage.removeItem(key);
  } catch {
    // storage refused (private mode): the session lives in memory only
  }
}

// The role's own page.
export function home(role: Role): string {
  switch (role) {
    case "CUSTOMER":
      return "/customer";
    case "AGENT":
      return "/agent";
    case "MASTER":
      return "/master";
    case "ADMIN":
      return "/admin";
  }
}

// devSignInURL is the development sign-in endpoint the server announces in index.html
// (<meta name="pizza-dev-signin">), or null: in production it is never there.
export function devSignInURL(): string | null {
  const m = document.querySelector('meta[name="pizza-dev-signin"]');
  const url = m?.getAttribute("content");
  return url && url.startsWith("/") ? url : null;
}

interface DevTokenError {
  code: string;
  message: string;
}

// devToken asks the development endpoint for a token of role (and id).
export async function devToken(url: string, role: Role, id: string): Promise<Session> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ role, id }),
    credentials: "same-origin",
  });
  let body: { token?: string; error?: DevTokenError } = {};
  try {
    body = await res.json();
  } catch {
    // not JSON: reported below with the status
  }
  if (!res.ok || !body.token) {
    const e = body.error ?? { code: res.status === 404 ? "NOT_FOUND" : "INTERNAL", message: `HTTP ${res.status}` };
    throw Object.assign(new Error(e.message), { code: e.code });
  }
  return decode(body.token);
}
