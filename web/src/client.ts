// The GraphQL client: urql with graphcache (a normalized cache), HTTP for queries and mutations,
// graphql-ws (graphql-transport-ws, same origin) for subscriptions. One client per signed-in
// session: signing out disposes it, socket and cache.
import { Client, fetchExchange, mapExchange, subscriptionExchange, type Operation } from "@urql/core";
import { cacheExchange, type Cache, type Data, type Variables } from "@urql/exchange-graphcache";
import { createClient as createWSClient, type Client as WSClient } from "graphql-ws";
import type { Session } from "./session";

export type Connection = "connecting" | "open" | "closed";

interface SeenVersion {
  orderId: string;
  version: number;
}

// A subscription whose operation context carries `seen` (a function returning what the page
// holds at that moment) sends it, computed afresh, every time graphql-ws subscribes: the first
// time and after each reconnection. So a page that reconnects is replayed exactly what it lacks.
export interface LiveContext {
  seen?: () => SeenVersion[];
}

function wsURL(loc: Location = location): string {
  return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + "/graphql";
}

// retryWait: quick first retries (a dropped socket comes back within a second), backing off to 5 s.
const retryWait = (retries: number) =>
  new Promise<void>((resolve) => setTimeout(resolve, Math.min(250 * 2 ** retries, 5000) + Math.random() * 250));

// insertInto links entity into every cached list field of Query named field whose arguments
// match (a new row pushed by a subscription joins the list the page shows).
function insertInto(cache: Cache, field: string, match: (args: Variables | null) => boolean, entity: Data | null) {
  const key = entity && cache.keyOfEntity(entity);
  if (!key) return;
  for (const f of cache.inspectFields("Query")) {
    if (f.fieldName !== field || !match(f.arguments)) continue;
    const list = cache.resolve("Query", f.fieldKey);
    if (Array.isArray(list) && !(list as unknown[]).includes(key)) {
      cache.link("Query", f.fieldKey, [key, ...(list as string[])] as unknown as Data[]); // fieldKey: the name with its arguments
    }
  }
}

interface ClientEvents {
  connection(c: Connection): void;
  // unauthenticated: the server refused the token (expired, or signed with another key)
  unauthenticated(): void;
}

export function newClient(session: Session, ev: ClientEvents): { client: Client; ws: WSClient } {
  const auth = "Bearer " + session.token;
  const ws = createWSClient({
    url: wsURL(),
    lazy: false, // the connection state is shown on every page, so keep the socket open
    connectionParams: () => ({ Authorization: auth }),
    retryAttempts: Infinity,
    shouldRetry: () => true,
    retryWait,
    keepAlive: 10_000,
    on: {
      connecting: () => ev.connection("connecting"),
      connected: () => ev.connection("open"),
      closed: (e) => {
        ev.connection("closed");
        if ((e as CloseEvent | undefined)?.code === 4403) ev.unauthenticated();
      },
    },
  });

  const client = new Client({
    url: "/graphql",
    preferGetMethod: false,
    fetchOptions: () => ({ headers: { Authorization: auth } }),
    exchanges: [
      mapExchange({
        onError(error) {
          const unauth =
            error.graphQLErrors.some((e) => e.extensions?.code === "UNAUTHENTICATED") ||
            (error.response as Response | undefined)?.status === 401;
          if (unauth) ev.unauthenticated();
        },
      }),
      cacheExchange({
        keys: {
          MyPageOrder: (d) => (d.id as string) ?? null,
          StoreOrder: (d) => (d.id as string) ?? null,
          Customer: (d) => (d.id as string) ?? null,
          Store: (d) => (d.id as string) ?? null,
          TimelineEvent: (d) => (d.eventId as string) ?? null,
          EventConsumption: () => null,
          OrderStep: () => null,
          SystemStatus: () => null,
          ServiceStatus: () => null,
          Breaker: () => null,
          DeadLetterOutcome: () => null,
        },
        updates: {
          Subscription: {
            myPage(result, args, cache) {
              insertInto(cache, "myPage", (a) => a?.customerId === args.customerId, result.myPage as Data);
            },
            storeOrders(result, args, cache) {
              insertInto(cache, "storeOrders", (a) => a?.storeId === args.storeId, result.storeOrders as Data);
            },
          },
          Mutation: {
            registerStore(result, _args, cache) {
              insertInto(cache, "stores", (a) => !a?.region, result.registerStore as Data);
            },
          },
        },
      }),
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request, operation: Operation) {
          const seen = (operation.context as LiveContext).seen;
          const variables = seen
            ? { ...request.variables, toJSON: () => ({ ...request.variables, seen: seen() }) }
            : request.variables;
          return {
            subscribe(sink) {
              const dispose = ws.subscribe({ ...request, query: request.query ?? "", variables }, sink);
              return { unsubscribe: dispose };
            },
          };
        },
      }),
    ],
  });
  return { client, ws };
}
