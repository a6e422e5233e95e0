// The call-center agent's page: find a customer, then their myPage live, and order or cancel for them.
import { useQuery } from "@urql/preact";
import { useEffect, useState } from "preact/hooks";
import { CustomersDocument } from "../gql/graphql";
import { describe } from "../errors";
import { formatTime, useLang, useT } from "../i18n";
import { navigate } from "../router";
import { ErrorLine, MyPage, OrderForm } from "./orders";

function useDebounced<V>(v: V, ms: number): V {
  const [d, setD] = useState(v);
  useEffect(() => {
    const id = setTimeout(() => setD(v), ms);
    return () => clearTimeout(id);
  }, [v, ms]);
  return d;
}

export function AgentPage({ customerId }: { customerId: string | null }) {
  const t = useT();
  const lang = useLang();
  const [search, setSearch] = useState("");
  const q = useDebounced(search.trim(), 200);
  const [res] = useQuery({ query: CustomersDocument, variables: { search: q || null, limit: 20 }, requestPolicy: "cache-and-network" });
  const found = res.data?.customers ?? [];
  const open = (id: string) => navigate(`/agent?customer=${encodeURIComponent(id)}`);

  const onKey = (e: KeyboardEvent) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    const typed = search.trim();
    const first = found.find((c) => c.id === typed) ?? found[0];
    if (first && (q === typed || !typed)) open(first.id);
    else if (typed) open(typed);
  };

  return (
    <div class="grid agent">
      <section class="card" aria-labelledby="agent-title">
        <h2 id="agent-title">{t("agent.title")}</h2>
        <label for="customer-search">{t("agent.search")}</label>
        <input
          id="customer-search"
          type="search"
          autocomplete="off"
          inputMode="numeric"
          aria-describedby="search-help"
          value={search}
          onInput={(e) => setSearch(e.currentTarget.value)}
          onKeyDown={onKey}
        />
        <p id="search-help" class="help">
          {t("agent.searchHelp")}
        </p>
        {res.error && <ErrorLine error={describe(res.error, t)} />}
        <ul class="customers" aria-label={t("agent.title")}>
          {found.map((c) => (
            <li key={c.id}>
              <button
                type="button"
                data-customer-id={c.id}
                aria-current={c.id === customerId ? "true" : undefined}
                onClick={() => open(c.id)}
              >
                <strong>{t("agent.customer", { id: c.id })}</strong>
                <span>{t("agent.orders", { n: c.orders })}</span>
                {c.lastOrderAt && <time dateTime={c.lastOrderAt}>{formatTime(lang, c.lastOrderAt)}</time>}
              </button>
            </li>
          ))}
        </ul>
        {res.data && found.length === 0 && <p>{t("agent.none")}</p>}
        {search.trim() && !found.some((c) => c.id === search.trim()) && (
          <button type="button" onClick={() => open(search.trim())}>
            {t("agent.open", { id: search.trim() })}
          </button>
        )}
      </section>
      {customerId ? (
        <div class="stack" key={customerId}>
          <OrderForm customerId={customerId} heading={t("order.for", { id: customerId })} />
          <MyPage customerId={customerId} heading={t("agent.customer", { id: customerId })} />
        </div>
      ) : (
        <section class="card">
          <p>{t("agent.pick")}</p>
        </section>
      )}
    </div>
  );
}
