// The customer's screens, also the agent's for the customer they talk to: the order form and
// myPage, live.
import { useMutation, useQuery } from "@urql/preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import {
  CancelOrderDocument,
  MyPageDocument,
  MyPageLiveDocument,
  OrderRetryDocument,
  PlaceOrderDocument,
  StoresDocument,
  type MyPageRowFragment,
  type PlaceOrderInput,
} from "../gql/graphql";
import { useLive } from "../uselive";
import { describe, type Problem } from "../errors";
import { formatTime, pizzas, useLang, useT } from "../i18n";
import { cancellable, getRetryAt, newKey, pending, setRetryAt, type Status } from "../live";

// usePlace places orders, remembering when a STORE_BUSY one may be placed again. A failed
// attempt keeps its idempotency key, so trying again can never place the order twice.
function usePlace() {
  const [state, place] = useMutation(PlaceOrderDocument);
  const key = useRef(newKey());
  const t = useT();
  const [problem, setProblem] = useState<Problem | null>(null);
  const run = async (input: Omit<PlaceOrderInput, "idempotencyKey">) => {
    setProblem(null);
    const res = await place({ input: { ...input, idempotencyKey: key.current } });
    if (res.error) {
      setProblem(describe(res.error, t));
      return null;
    }
    key.current = newKey();
    const o = res.data!.placeOrder;
    if (o.rejectReason === "STORE_BUSY") setRetryAt(o.id, Date.now() + (o.retryAfterSeconds ?? 0) * 1000);
    return o;
  };
  return { fetching: state.fetching, problem, place: run };
}

export function OrderForm({ customerId, heading }: { customerId: string; heading: string }) {
  const t = useT();
  const [stores] = useQuery({ query: StoresDocument });
  const regions = useMemo(
    () => [...new Set((stores.data?.stores ?? []).map((s) => s.region))].sort((a, b) => a.localeCompare(b, "ko")),
    [stores.data],
  );
  const [done, setDone] = useState("");
  const { fetching, problem, place } = usePlace();

  // The fields are read when the form is submitted (not kept in state): whatever filled them counts.
  const submit = async (e: Event) => {
    e.preventDefault();
    setDone("");
    const f = new FormData(e.currentTarget as HTMLFormElement);
    const o = await place({
      customerId,
      pizza: String(f.get("pizza") ?? ""),
      qty: Number(f.get("qty")),
      region: String(f.get("region") ?? ""),
    });
    if (o) setDone(t("order.placed", { id: o.id, status: t(`status.${o.status}` as "status.ORDERED") }));
  };

  return (
    <section class="card" aria-labelledby="order-title">
      <h2 id="order-title">{heading}</h2>
      <form id="order-form" onSubmit={submit}>
        <div class="fields">
          <label>
            {t("order.pizza")}
            <select id="pizza" name="pizza">
              {pizzas.map((p) => (
                <option key={p} value={p}>
                  {p}
                </option>
              ))}
            </select>
          </label>
          <label>
            {t("order.qty")}
            <input id="qty" name="qty" type="number" inputMode="numeric" min={1} max={100} required defaultValue="1" />
          </label>
          <label>
            {t("order.region")}
            <select id="region" name="region" required>
              {regions.length === 0 && <option value="">{t("order.noRegions")}</option>}
              {regions.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </label>
        </div>
        <button id="place-order" type="submit" class="primary" disabled={fetching || regions.length === 0}>
          {fetching ? t("order.placing") : t("order.submit")}
        </button>
      </form>
      <p class="status" role="status" aria-live="polite">
        {done}
      </p>
      {problem && (
        <p class="error" role="alert" data-error-code={problem.code}>
          {problem.message}
        </p>
      )}
    </section>
  );
}

const byNewest = (a: { orderId: string }, b: { orderId: string }) =>
  Number(b.orderId) - Number(a.orderId) || b.orderId.localeCompare(a.orderId);

export function MyPage({ customerId, heading }: { customerId: string; heading: string }) {
  const t = useT();
  const [res] = useQuery({ query: MyPageDocument, variables: { customerId, limit: 100 }, requestPolicy: "cache-and-network" });
  const rows = useMemo(() => [...(res.data?.myPage ?? [])].sort(byNewest), [res.data]);

  const live = useLive(MyPageLiveDocument, { customerId }, res.data ? rows : undefined);

  return (
    <section class="card" aria-labelledby="mypage-title">
      <h2 id="mypage-title">{heading}</h2>
      {res.error && <ErrorLine error={describe(res.error, t)} />}
      {live.error && <ErrorLine error={describe(live.error, t)} />}
      {!res.data && res.fetching && <p>{t("mypage.loading")}</p>}
      {res.data && rows.length === 0 && <p>{t("mypage.empty")}</p>}
      <ul id="orders" class="orders" aria-live="polite">
        {rows.map((r) => (
          <OrderRow key={r.id} row={r} />
        ))}
      </ul>
    </section>
  );
}

export function ErrorLine({ error }: { error: Problem }) {
  return (
    <p class="error" role="alert" data-error-code={error.code}>
      {error.message}
    </p>
  );
}

function OrderRow({ row }: { row: MyPageRowFragment }) {
  const t = useT();
  const lang = useLang();
  const [cancelState, cancel] = useMutation(CancelOrderDocument);
  const [problem, setProblem] = useState<Problem | null>(null);
  const status = row.status as Status;

  const onCancel = async () => {
    setProblem(null);
    const res = await cancel({ orderId: row.orderId });
    if (res.error) setProblem(describe(res.error, t));
  };

  return (
    <li class="order" data-order-id={row.orderId} data-status={row.status}>
      <div class="order-head">
        <strong>{t("order.id", { id: row.orderId })}</strong>
        <span>
          {row.pizza} × {row.qty}
        </span>
        <span>{row.region}</span>
        <span class={`badge s-${row.status}`}>{t(`status.${row.status}`)}</span>
      </div>
      <ol class="steps">
        {row.steps.map((s) => (
          <li key={s.status} data-step={s.status} class={`step s-${s.status}`}>
            <span>{t(`status.${s.status}`)}</span>
            <time dateTime={s.at}>{formatTime(lang, s.at)}</time>
          </li>
        ))}
        {pending(status).map((s) => (
          <li key={s} class="step pending">
            <span>{t(`status.${s}`)}</span>
          </li>
        ))}
      </ol>
      {row.storeId || row.deliveryId ? (
        <p class="meta">
          {row.storeId && t("order.store", { id: row.storeId })}
          {row.storeId && row.deliveryId && " · "}
          {row.deliveryId && t("order.delivery", { id: row.deliveryId })}
        </p>
      ) : null}
      {status === "REJECTED" && row.rejectReason && <Rejected row={row} />}
      {cancellable(status) && (
        <button type="button" data-action="cancel" disabled={cancelState.fetching} onClick={onCancel}>
          {t("cancel")}
        </button>
      )}
      {problem && <ErrorLine error={problem} />}
    </li>
  );
}

function Rejected({ row }: { row: MyPageRowFragment }) {
  const t = useT();
  const reason = row.rejectReason!;
  return (
    <div class="rejected" data-reason={reason} role="note">
      <p>{t(`reason.${reason}`)}</p>
      {reason === "STORE_BUSY" && <Reorder row={row} />}
    </div>
  );
}

// Reorder counts down to when the breaker lets orders through again, then offers the same order.
function Reorder({ row }: { row: MyPageRowFragment }) {
  const t = useT();
  const known = getRetryAt(row.orderId);
  const [order] = useQuery({ query: OrderRetryDocument, variables: { id: row.orderId }, pause: known !== undefined });
  const o = order.data?.order;
  const at = known ?? (o ? Date.parse(o.placedAt) + (o.retryAfterSeconds ?? 0) * 1000 : undefined);
  const left = useCountdown(at);
  const { fetching, problem, place } = usePlace();
  const ready = at !== undefined && left === 0;
  const [before, after] = t("busy.countdown").split("{s}");
  return (
    <div class="reorder">
      {ready ? (
        <p role="status">
          <span data-countdown class="sr-only">
            0
          </span>
          {t("busy.ready")}
        </p>
      ) : (
        <p>
          {before}
          <span data-countdown>{left ?? ""}</span>
          {after}
        </p>
      )}
      <button
        type="button"
        data-action="reorder"
        class="primary"
        disabled={!ready || fetching}
        onClick={() => place({ customerId: row.customerId, pizza: row.pizza, qty: row.qty, region: row.region })}
      >
        {t("reorder")}
      </button>
      {problem && <ErrorLine error={problem} />}
    </div>
  );
}

// useCountdown: whole seconds left until at (ms), ticking; 0 once reached.
function useCountdown(at: number | undefined): number | undefined {
  const calc = () => (at === undefined ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000)));
  const [left, setLeft] = useState(calc);
  useEffect(() => {
    setLeft(calc());
    if (at === undefined) return;
    const id = setInterval(() => {
      const l = calc();
      setLeft(l);
      if (l === 0) clearInterval(id);
    }, 200);
    return () => clearInterval(id);
  }, [at]);
  return left;
}
