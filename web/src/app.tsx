// The console: the session, the client, the language, the header and the page for the route.
import { Provider } from "@urql/preact";
import type { Client } from "@urql/core";
import type { Client as WSClient } from "graphql-ws";
import { useEffect, useMemo, useState } from "preact/hooks";
import { newClient, type Connection } from "./client";
import { LangContext, initialLang, langs, rememberLang, translator, useT, type Lang } from "./i18n";
import { match, navigate, onLinkClick, useLocation, type Page } from "./router";
import { home, load, save, type Role, type Session } from "./session";
import { AgentPage } from "./pages/agent";
import { CustomerPage } from "./pages/customer";
import { MasterPage } from "./pages/master";
import { OrdersPage, StoresPage, SystemPage } from "./pages/admin";
import { SignIn } from "./pages/signin";

interface Live {
  session: Session;
  client: Client;
  ws: WSClient;
}

const nav: Record<Role, { path: string; key: "nav.customer" | "nav.agent" | "nav.master" | "nav.admin" | "nav.orders" | "nav.system" }[]> = {
  CUSTOMER: [{ path: "/customer", key: "nav.customer" }],
  AGENT: [{ path: "/agent", key: "nav.agent" }],
  MASTER: [{ path: "/master", key: "nav.master" }],
  ADMIN: [
    { path: "/admin", key: "nav.admin" },
    { path: "/admin/orders", key: "nav.orders" },
    { path: "/admin/system", key: "nav.system" },
    { path: "/agent", key: "nav.agent" },
    { path: "/master", key: "nav.master" },
  ],
};

export function App() {
  const [lang, setLang] = useState<Lang>(initialLang);
  const t = useMemo(() => translator(lang), [lang]);
  const [live, setLive] = useState<Live | null>(null);
  const [conn, setConn] = useState<Connection>("closed");
  const [notice, setNotice] = useState("");
  const loc = useLocation();
  const route = match(loc.path);

  const signIn = (s: Session | null, why = "") => {
    save(s);
    setLive((old) => {
      old?.ws.dispose();
      if (!s) return null;
      const { client, ws } = newClient(s, {
        connection: setConn,
        unauthenticated: () => queueMicrotask(() => signIn(null, "expired")),
      });
      return { session: s, client, ws };
    });
    if (!s) {
      setConn("closed");
      setNotice(why);
      navigate("/signin", true);
    } else {
      setNotice("");
      const next = new URLSearchParams(location.search).get("next");
      navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : home(s.role), true);
    }
  };

  // A session kept by this tab (reload) signs in again; none sends the user to sign in.
  useEffect(() => {
    const s = load();
    if (s) {
      const { client, ws } = newClient(s, {
        connection: setConn,
        unauthenticated: () => queueMicrotask(() => signIn(null, "expired")),
      });
      setLive({ session: s, client, ws });
    }
  }, []);

  useEffect(() => {
    document.documentElement.lang = lang;
    document.title = t("title");
  }, [lang]);

  const session = live?.session ?? null;
  useEffect(() => {
    if (route.page === "home" || (!session && route.page !== "signin" && route.page !== "notfound")) {
      if (session) navigate(home(session.role), true);
      else if (!load()) navigate(route.page === "home" ? "/signin" : `/signin?next=${encodeURIComponent(loc.path + location.search)}`, true);
    }
  }, [route.page, session]);

  return (
    <LangContext.Provider value={{ lang, t }}>
      <div id="app" data-role={session?.role ?? ""} data-connection={conn}>
        <a class="skip" href="#main">
          {t("skip")}
        </a>
        <header class="top">
          <h1>
            <a href="/" onClick={onLinkClick}>
              1588-pizza
            </a>
          </h1>
          {session && (
            <nav aria-label={t("nav.label")}>
              <ul>
                {nav[session.role].map((n) => (
                  <li key={n.path}>
                    <a href={n.path} onClick={onLinkClick} aria-current={loc.path === n.path ? "page" : undefined}>
                      {t(n.key)}
                    </a>
                  </li>
                ))}
                <li>
                  <a href="/playground">{t("nav.playground")}</a>
                </li>
              </ul>
            </nav>
          )}
          <div class="tools">
            <span class={`conn conn-${conn}`} role="status" aria-label={t("conn.label")} title={t("conn.label")}>
              <span class="dot" aria-hidden="true" />
              {t(`conn.${conn}`)}
            </span>
            {session && (
              <span class="who">
                {t(`role.${session.role}`)}
                {session.customerId && ` ${session.customerId}`}
                {session.storeId && ` · ${t("order.store", { id: session.storeId })}`}
              </span>
            )}
            <label class="lang">
              <span class="sr-only">{t("language")}</span>
              <select
                id="lang"
                value={lang}
                onChange={(e) => {
                  const l = e.currentTarget.value as Lang;
                  setLang(l);
                  rememberLang(l);
                }}
              >
                {langs.map((l) => (
                  <option key={l} value={l}>
                    {l === "ko" ? "한국어" : "English"}
                  </option>
                ))}
              </select>
            </label>
            {session && (
              <button id="signout" type="button" onClick={() => signIn(null)}>
                {t("signout")}
              </button>
            )}
          </div>
        </header>
        <main id="main" tabIndex={-1}>
          {route.page === "signin" || !live ? (
            route.page === "notfound" ? (
              <p>{t("notfound")}</p>
            ) : (
              <SignIn onSession={(s) => signIn(s)} notice={notice === "expired" ? t("signin.expired") : ""} />
            )
          ) : (
            <Provider value={live.client}>
              <PageFor page={route.page} session={live.session} query={loc.query} allowed={!route.roles || route.roles.includes(live.session.role)} />
            </Provider>
          )}
        </main>
      </div>
    </LangContext.Provider>
  );
}

function PageFor({ page, session, query, allowed }: { page: Page; session: Session; query: URLSearchParams; allowed: boolean }) {
  const t = useT();
  if (!allowed) return <p class="error" role="alert">{t("err.FORBIDDEN")}</p>;
  switch (page) {
    case "customer":
      return <CustomerPage customerId={session.customerId ?? ""} />;
    case "agent":
      return <AgentPage customerId={query.get("customer")} />;
    case "master":
      return session.role === "MASTER" ? (
        <MasterPage storeId={session.storeId ?? null} pick={false} />
      ) : (
        <MasterPage storeId={query.get("store")} pick={true} />
      );
    case "admin-stores":
      return <StoresPage />;
    case "admin-orders":
      return <OrdersPage id={query.get("id")} />;
    case "admin-system":
      return <SystemPage />;
    case "notfound":
      return <p>{t("notfound")}</p>;
    default:
      return null;
  }
}

