// What the page learns from live rows beyond the rows themselves: when each step of an order
// happened (a myPage row carries only its latest change's time), and when a STORE_BUSY order
// may be placed again.

export type Status = "ORDERED" | "RECEIVED" | "COOKED" | "DELIVERY_STARTED" | "CANCELLED" | "REJECTED";
export const progress: Status[] = ["ORDERED", "RECEIVED", "COOKED", "DELIVERY_STARTED"];

const stepTimes = new Map<string, Partial<Record<Status, string>>>();

// observe records that order orderId had status at (the row's updatedAt), the first time seen.
export function observe(orderId: string, status: Status, at: string) {
  let m = stepTimes.get(orderId);
  if (!m) stepTimes.set(orderId, (m = {}));
  if (!m[status]) m[status] = at;
}

export function stepTime(orderId: string, status: Status): string | undefined {
  return stepTimes.get(orderId)?.[status];
}

// steps lists the steps an order with this status has gone through: the progress up to it, or
// for a cancelled or rejected order what it reached (as far as the page saw) and its end.
export function steps(orderId: string, status: Status): Status[] {
  const i = progress.indexOf(status);
  if (i >= 0) return progress.slice(0, i + 1);
  // A rejected order was never ORDERED (it is recorded refused); a cancelled one was.
  const reached = progress.filter((s, j) => (j === 0 && status === "CANCELLED") || stepTime(orderId, s) !== undefined);
  return [...reached, status];
}

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
