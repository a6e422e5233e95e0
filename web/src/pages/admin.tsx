// The admin's pages: stores (register, open or close, unfinished orders), order lookup with its
// event timeline, and the system page.
import { useMutation, useQuery } from "@urql/preact";
import { useEffect, useState } from "preact/hooks";
import {
  BoardDocument,
  LookupOrderDocument,
  RegisterStoreDocument,
  SetStoreOpenDocument,
  StoresDocument,
  SystemStatusDocument,
  type StoreFieldsFragment,
} from "../gql/graphql";
import { describe, type Problem } from "../errors";
import { formatTime, useLang, useT } from "../i18n";
import { navigate, onLinkClick } from "../router";
import { ErrorLine } from "./orders";

export function StoresPage() {
  const t = useT();
  const [stores] = useQuery({ query: StoresDocument, requestPolicy: "cache-and-network" });
  const list = [...(stores.data?.stores ?? [])].sort((a, b) => Number(a.id) - Number(b.id));
  return (
    <div class="grid">
      <RegisterStore />
      <section class="card wide" aria-labelledby="stores-title">
        <h2 id="stores-title">{t("admin.stores")}</h2>
        {stores.error && <ErrorLine error={describe(stores.error, t)} />}
        <table id="stores">
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">{t("admin.name")}</th>
              <th scope="col">{t("order.region")}</th>
              <th scope="col">{t("admin.open")}</th>
              <th scope="col">{t("admin.unfinished")}</th>
              <th scope="col">
                <span class="sr-only">{t("admin.board")}</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.map((s) => (
              <StoreRow key={s.id} store={s} />
            ))}
          </tbody>
        </table>
      </section>
    </div>
  );
}

function RegisterStore() {
  const t = useT();
  const [state, register] = useMutation(RegisterStoreDocument);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [done, setDone] = useState("");
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const f = new FormData(form);
    setProblem(null);
    setDone("");
    const input = { name: String(f.get("name") ?? "").trim(), region: String(f.get("region") ?? "").trim(), open: f.get("open") === "on" };
    const res = await register({ input });
    if (res.error) return setProblem(describe(res.error, t));
    setDone(t("admin.registered", { name: res.data!.registerStore.name }));
    (form.elements.namedItem("name") as HTMLInputElement).value = "";
  };
  return (
    <section class="card" aria-labelledby="register-title">
      <h2 id="register-title">{t("admin.register")}</h2>
      <form id="store-form" onSubmit={submit}>
        <label>
          {t("admin.name")}
          <input id="store-name" name="name" required placeholder="강남점" autocomplete="off" />
        </label>
        <label>
          {t("admin.region")}
          <input id="store-region" name="region" required placeholder="강남구" autocomplete="off" />
        </label>
        <div class="switch">
          <input id="store-open-new" name="open" type="checkbox" defaultChecked />
          <label for="store-open-new">{t("admin.openNew")}</label>
        </div>
        <button id="register-store" type="submit" class="primary" disabled={state.fetching}>
          {t("admin.register")}
        </button>
      </form>
      <p class="status" role="status" aria-live="polite">
        {done}
      </p>
      {problem && <ErrorLine error={problem} />}
    </section>
  );
}

function StoreRow({ store }: { store: StoreFieldsFragment }) {
  const t = useT();
  const [orders] = useQuery({
    query: BoardDocument,
    variables: { storeId: store.id, status: "RECEIVED" },
    requestPolicy: "cache-and-network",
  });
  const [state, setOpen] = useMutation(SetStoreOpenDocument);
  const [problem, setProblem] = useState<Problem | null>(null);
  const unfinished = orders.data?.storeOrders ?? [];
  const boxId = `store-open-${store.id}`;
  return (
    <tr data-store-id={store.id} data-open={String(store.open)}>
      <td>{store.id}</td>
      <td>{store.name}</td>
      <td>{store.region}</td>
      <td>
        <div class="switch">
          <input
            id={boxId}
            type="checkbox"
            role="switch"
            checked={store.open}
            disabled={state.fetching}
            onChange={async (e) => {
              setProblem(null);
              const res = await setOpen({ storeId: store.id, open: e.currentTarget.checked });
              if (res.error) setProblem(describe(res.error, t));
            }}
          />
          <label for={boxId}>{store.open ? t("admin.open") : t("admin.closed")}</label>
        </div>
        {problem && <ErrorLine error={problem} />}
      </td>
      <td data-unfinished={unfinished.length}>
        {unfinished.length}
        {unfinished.length > 0 && (
          <span class="ids">
            {" "}
            ({unfinished
              .slice(0, 10)
              .map((o) => o.orderId)
              .join(", ")}
            {unfinished.length > 10 ? ", …" : ""})
          </span>
        )}
      </td>
      <td>
        <a href={`/master?store=${encodeURIComponent(store.id)}`} onClick={onLinkClick}>
          {t("admin.board")}
        </a>
      </td>
    </tr>
  );
}

export function OrdersPage({ id }: { id: string | null }) {
  const t = useT();
  const lang = useLang();
  const [res] = useQuery({ query: LookupOrderDocument, variables: { id: id ?? "" }, pause: !id, requestPolicy: "network-only" });
  const submit = (e: Event) => {
    e.preventDefault();
    const typed = String(new FormData(e.currentTarget as HTMLFormElement).get("id") ?? "").trim();
    if (typed) navigate(`/admin/orders?id=${encodeURIComponent(typed)}`);
  };
  const order = res.data?.order;
  const events = res.data?.orderTimeline ?? [];
  return (
    <div class="stack">
      <section class="card" aria-labelledby="lookup-title">
        <h2 id="lookup-title">{t("admin.lookup")}</h2>
        <form class="inline" onSubmit={submit}>
          <label for="lookup-order">{t("admin.orderId")}</label>
          <input id="lookup-order" name="id" inputMode="numeric" autocomplete="off" required defaultValue={id ?? ""} />
          <button id="lookup" type="submit" class="primary">
            {t("admin.lookupSubmit")}
          </button>
        </form>
        {res.error && <ErrorLine error={describe(res.error, t)} />}
        {id && res.data && !order && <p role="status">{t("admin.notFound", { id })}</p>}
        {order && (
          <dl class="order-facts" data-order-id={order.id} data-status={order.status}>
            <dt>{t("field.order")}</dt>
            <dd>{order.id}</dd>
            <dt>{t("field.customer")}</dt>
            <dd>{order.customerId}</dd>
            <dt>{t("order.pizza")}</dt>
            <dd>
              {order.pizza} × {order.qty}
            </dd>
            <dt>{t("order.region")}</dt>
            <dd>{order.region}</dd>
            <dt>{t("field.status")}</dt>
            <dd>
              <span class={`badge s-${order.status}`}>{t(`status.${order.status}`)}</span>
              {order.rejectReason && ` · ${t(`reason.${order.rejectReason}`)}`}
              {order.storeId && ` · ${t("order.store", { id: order.storeId })}`}
            </dd>
          </dl>
        )}
      </section>
      {res.data && (
        <section class="card wide" aria-labelledby="timeline-title">
          <h2 id="timeline-title">{t("admin.timeline")}</h2>
          <table id="timeline">
            <thead>
              <tr>
                <th scope="col">{t("admin.event")}</th>
                <th scope="col">{t("admin.producer")}</th>
                <th scope="col">{t("admin.written")}</th>
                <th scope="col">{t("admin.published")}</th>
                <th scope="col">{t("admin.consumed")}</th>
              </tr>
            </thead>
            <tbody>
              {events.map((e) => (
                <tr key={e.eventId} data-event-type={e.type}>
                  <td>
                    <code>{e.type}</code>
                  </td>
                  <td>{e.producer}</td>
                  <td>
                    <time dateTime={e.writtenAt}>{formatTime(lang, e.writtenAt)}</time>
                  </td>
                  <td>
                    {e.publishedAt ? (
                      <time dateTime={e.publishedAt}>{formatTime(lang, e.publishedAt)}</time>
                    ) : (
                      t("admin.pending", { n: e.publishAttempts })
                    )}
                  </td>
                  <td>
                    <ul class="consumed">
                      {e.consumed.map((c) => (
                        <li key={c.service} data-consumer={c.service}>
                          {c.service} <time dateTime={c.at}>{formatTime(lang, c.at)}</time>
                        </li>
                      ))}
                    </ul>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
    </div>
  );
}

const refreshEvery = 2000;

export function SystemPage() {
  const t = useT();
  const lang = useLang();
  const [res, refresh] = useQuery({ query: SystemStatusDocument, requestPolicy: "network-only" });
  useEffect(() => {
    const id = setInterval(() => refresh({ requestPolicy: "network-only" }), refreshEvery);
    return () => clearInterval(id);
  }, [refresh]);
  const st = res.data?.systemStatus;
  const secs = (v: number | null | undefined) => (v == null ? "—" : t("seconds", { n: v.toFixed(v < 10 ? 2 : 0) }));
  return (
    <section class="card wide" aria-labelledby="system-title">
      <h2 id="system-title">{t("system.title")}</h2>
      <p class="help">
        {t("system.refresh")}
        {st && (
          <>
            {" · "}
            <time dateTime={st.at}>{t("system.at", { t: formatTime(lang, st.at) })}</time>
          </>
        )}
      </p>
      {res.error && <ErrorLine error={describe(res.error, t)} />}
      <div class="scroll">
        <table id="system">
          <thead>
            <tr>
              <th scope="col">{t("system.service")}</th>
              <th scope="col">{t("system.ready")}</th>
              <th scope="col">{t("system.outbox")}</th>
              <th scope="col">{t("system.oldest")}</th>
              <th scope="col">{t("system.queued")}</th>
              <th scope="col">{t("system.lag")}</th>
              <th scope="col">{t("system.dead")}</th>
              <th scope="col">{t("system.breakers")}</th>
            </tr>
          </thead>
          <tbody>
            {(st?.services ?? []).map((s) => (
              <tr key={s.name} data-service={s.name} data-ready={String(s.ready)} class={s.ready ? "" : "bad"}>
                <th scope="row">{s.name}</th>
                <td>
                  {s.ready ? t("system.yes") : t("system.no")}
                  {s.error && <div class="error small">{s.error}</div>}
                </td>
                <td class="num">{s.outboxBacklog}</td>
                <td class="num">{secs(s.outboxOldestSeconds)}</td>
                <td class="num">{s.consumerQueued}</td>
                <td class="num">{secs(s.consumerLagSeconds)}</td>
                <td class={`num${s.deadLetters > 0 ? " warn" : ""}`}>{s.deadLetters}</td>
                <td>
                  <ul class="breakers">
                    {s.breakers.map((b) => (
                      <li key={b.name} data-breaker={b.name} data-state={b.state} class={`breaker b-${b.state}`}>
                        {b.name}: {t(`breaker.${b.state}`)}
                      </li>
                    ))}
                  </ul>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
