// The store master's board: the store's orders live, new ones marked until looked at; mark
// cooked; open or close the store. An admin sees any store's (/master?store=ID).
import { useMutation, useQuery } from "@urql/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import {
  BoardDocument,
  BoardLiveDocument,
  MarkCookedDocument,
  SetStoreOpenDocument,
  StoresDocument,
  type BoardRowFragment,
} from "../gql/graphql";
import { useLive } from "../uselive";
import { describe, type Problem } from "../errors";
import { formatTime, useLang, useT } from "../i18n";
import { navigate } from "../router";
import { ErrorLine } from "./orders";

const active = (s: string) => s === "ORDERED" || s === "RECEIVED";
const doneShown = 30;

export function MasterPage({ storeId, pick }: { storeId: string | null; pick: boolean }) {
  const t = useT();
  const [stores] = useQuery({ query: StoresDocument });
  const store = stores.data?.stores.find((s) => s.id === storeId);
  return (
    <div class="stack">
      <section class="card board-head" aria-labelledby="board-title">
        <h2 id="board-title">
          {t("master.title")}
          {store && ` · ${store.name} (${store.region})`}
        </h2>
        {pick && (
          <label>
            {t("master.store")}
            <select
              id="board-store"
              value={storeId ?? ""}
              onChange={(e) => navigate(`/master?store=${encodeURIComponent(e.currentTarget.value)}`)}
            >
              <option value="">{t("master.pickStore")}</option>
              {(stores.data?.stores ?? []).map((s) => (
                <option key={s.id} value={s.id}>
                  {s.id} · {s.name} ({s.region})
                </option>
              ))}
            </select>
          </label>
        )}
        {storeId && <OpenSwitch storeId={storeId} open={store?.open} />}
      </section>
      {storeId && <Board key={storeId} storeId={storeId} />}
    </div>
  );
}

function OpenSwitch({ storeId, open }: { storeId: string; open: boolean | undefined }) {
  const t = useT();
  const [state, setOpen] = useMutation(SetStoreOpenDocument);
  const [problem, setProblem] = useState<Problem | null>(null);
  return (
    <div class="switch">
      <input
        id="store-open"
        type="checkbox"
        role="switch"
        checked={!!open}
        disabled={open === undefined || state.fetching}
        onChange={async (e) => {
          setProblem(null);
          const res = await setOpen({ storeId, open: e.currentTarget.checked });
          if (res.error) setProblem(describe(res.error, t));
        }}
      />
      <label for="store-open">{t("master.open")}</label>
      {problem && <ErrorLine error={problem} />}
    </div>
  );
}

function Board({ storeId }: { storeId: string }) {
  const t = useT();
  const [res] = useQuery({ query: BoardDocument, variables: { storeId, status: "RECEIVED" }, requestPolicy: "cache-and-network" });
  const rows = res.data?.storeOrders ?? [];

  const live = useLive(BoardLiveDocument, { storeId }, res.data ? rows : undefined);

  // New: an unfinished order that arrived after the board first loaded, until looked at or acted on.
  const known = useRef<Set<string> | null>(null);
  const [fresh, setFresh] = useState<ReadonlySet<string>>(new Set());
  useEffect(() => {
    if (!res.data) return;
    if (known.current === null) {
      known.current = new Set(rows.map((r) => r.id));
      return;
    }
    const arrived = rows.filter((r) => !known.current!.has(r.id));
    if (arrived.length === 0) return;
    arrived.forEach((r) => known.current!.add(r.id));
    const n = arrived.filter((r) => active(r.status)).map((r) => r.id);
    if (n.length) setFresh((f) => new Set([...f, ...n]));
  }, [res.data]);
  const seen = (id: string) =>
    fresh.has(id) &&
    setFresh((f) => {
      const c = new Set(f);
      c.delete(id);
      return c;
    });

  const todo = rows.filter((r) => active(r.status)).sort((a, b) => a.receivedAt.localeCompare(b.receivedAt));
  const done = rows
    .filter((r) => !active(r.status))
    .sort((a, b) => b.receivedAt.localeCompare(a.receivedAt))
    .slice(0, doneShown);

  return (
    <section class="card" aria-labelledby="todo-title">
      {res.error && <ErrorLine error={describe(res.error, t)} />}
      {live.error && <ErrorLine error={describe(live.error, t)} />}
      <div id="board">
        <h3 id="todo-title">
          {t("master.active")} <span class="count">{todo.length}</span>
        </h3>
        {res.data && todo.length === 0 && <p>{t("master.empty")}</p>}
        <ul class="board" aria-live="polite">
          {todo.map((r) => (
            <BoardRow key={r.id} row={r} isNew={fresh.has(r.id)} onSeen={() => seen(r.id)} />
          ))}
        </ul>
        {done.length > 0 && (
          <>
            <h3>{t("master.done")}</h3>
            <ul class="board done">
              {done.map((r) => (
                <BoardRow key={r.id} row={r} isNew={false} onSeen={() => seen(r.id)} />
              ))}
            </ul>
          </>
        )}
      </div>
    </section>
  );
}

function BoardRow({ row, isNew, onSeen }: { row: BoardRowFragment; isNew: boolean; onSeen: () => void }) {
  const t = useT();
  const lang = useLang();
  const [state, cook] = useMutation(MarkCookedDocument);
  const [problem, setProblem] = useState<Problem | null>(null);
  return (
    <li
      class={`order${isNew ? " new" : ""}`}
      data-order-id={row.orderId}
      data-status={row.status}
      data-new={isNew ? "true" : undefined}
      tabIndex={isNew ? 0 : undefined}
      onClick={onSeen}
      onFocusCapture={onSeen}
    >
      <div class="order-head">
        {isNew && <span class="badge new">{t("master.new")}</span>}
        <strong>{t("order.id", { id: row.orderId })}</strong>
        <span>
          {row.pizza} × {row.qty}
        </span>
        <span class={`badge s-${row.status}`}>{t(`status.${row.status}`)}</span>
        <time dateTime={row.receivedAt}>{t("master.received", { t: formatTime(lang, row.receivedAt) })}</time>
      </div>
      {row.status === "RECEIVED" && (
        <button
          type="button"
          class="primary"
          data-action="cook"
          disabled={state.fetching}
          onClick={async () => {
            onSeen();
            setProblem(null);
            const res = await cook({ orderId: row.orderId });
            if (res.error) setProblem(describe(res.error, t));
          }}
        >
          {t("master.cook")}
        </button>
      )}
      {problem && <ErrorLine error={problem} />}
    </li>
  );
}
