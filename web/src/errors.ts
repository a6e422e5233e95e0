// Errors, decoded by their extensions.code (docs/api.md#errors) into words for the page.
import type { CombinedError } from "@urql/core";
import { has, type T } from "./i18n";

export interface Problem {
  code: string;
  message: string; // in the page's language, with the server's detail where it helps
}

export function codeOf(error: CombinedError): string {
  const coded = error.graphQLErrors.find((e) => typeof e.extensions?.code === "string");
  if (coded) return coded.extensions.code as string;
  if (error.networkError) return "NETWORK";
  return "INTERNAL";
}

export function describe(error: CombinedError, t: T): Problem {
  const code = codeOf(error);
  const key = "err." + code;
  const base = has(key) ? t(key) : code;
  const first = error.graphQLErrors[0];
  // The server's own words say which field or which state, for these codes.
  const detail = (code === "BAD_USER_INPUT" || code === "CONFLICT") && first ? first.message : "";
  const field = first?.extensions?.field ? ` (${String(first.extensions.field)})` : "";
  return { code, message: detail ? `${base}: ${detail}${field}` : base };
}
