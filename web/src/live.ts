// What the page keeps beside the rows: the steps still ahead of an order, and when a STORE_BUSY
// order may be placed again.

export type Status = "ORDERED" | "RECEIVED" | "COOKED" | "DELIVERY_STARTED" | "CANCELLED" | "REJECTED";
const progress: Status[] = ["ORDERED", "RECEIVED", "COOKED", "DELIVERY_STARTED"];

// pending lists the steps still ahead of an order in progress.
export function pending(status: Status): Status[] {
  const i = progress.indexOf(status);
  return i >= 0 ? progress.slice(i + 1) : [];
}

export const cancellable = (s: Status) => s === "ORDERED" || s === "RECEIVED";

// When a STORE_BUSY order may be re-ordered, in this browser's clock (ms since the epoch).
const retryAt = new Map<string, number>();

export function setRetryAt(orderId: string, at: number) {
  retryAt.set(orderId, at);
}

export function getRetryAt(orderId: string): number | undefined {
  return retryAt.get(orderId);
}

// A random idempotency key (crypto.getRandomValues works on plain http too, unlike randomUUID).
export function newKey(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
