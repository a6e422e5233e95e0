// The console's words, in Korean (the default: the call centers are Korean) and English.
import { createContext } from "preact";
import { useContext } from "preact/hooks";

export type Lang = "ko" | "en";
export const langs: Lang[] = ["ko", "en"];

// Pizzas offered by the order form: Korean names, as the stores know them.
export const pizzas = ["페퍼로니", "불고기", "포테이토", "콤비네이션", "고구마", "하와이안피자"];

const ko = {
  title: "1588-pizza 콘솔",
  skip: "본문으로 건너뛰기",
  language: "언어",
  "conn.connecting": "연결 중",
  "conn.open": "실시간 연결됨",
  "conn.closed": "연결 끊김",
  "conn.label": "실시간 연결 상태",
  signout: "로그아웃",
  "nav.label": "메뉴",
  "nav.customer": "내 주문",
  "nav.agent": "상담원",
  "nav.master": "매장 보드",
  "nav.admin": "매장 관리",
  "nav.orders": "주문 조회",
  "nav.system": "시스템",
  "nav.playground": "GraphQL 플레이그라운드",
  "role.CUSTOMER": "고객",
  "role.AGENT": "상담원",
  "role.MASTER": "점장",
  "role.ADMIN": "관리자",
  "signin.title": "로그인",
  "signin.token": "토큰 (Bearer)",
  "signin.tokenHelp": "토큰을 붙여 넣으세요. 토큰은 make run이 역할마다 하나씩 출력하고, 이렇게도 만듭니다:",
  "signin.submit": "로그인",
  "signin.bad": "토큰을 읽을 수 없습니다",
  "signin.expired": "로그인이 만료되었습니다. 다시 로그인하세요.",
  "signin.dev": "개발용 빠른 로그인",
  "signin.devHelp": "개발 환경에서만 보입니다: 역할과 아이디를 골라 한 번에 로그인합니다.",
  "signin.role": "역할",
  "signin.id.CUSTOMER": "고객 아이디",
  "signin.id.MASTER": "매장 아이디",
  "signin.id.AGENT": "상담원 이름 (선택)",
  "signin.id.ADMIN": "관리자 이름 (선택)",
  "signin.devSubmit": "이 역할로 로그인",
  "signin.as": "로그인: {role}",
  "order.title": "주문하기",
  "order.for": "고객 {id}의 주문",
  "order.pizza": "피자",
  "order.qty": "수량",
  "order.region": "지역",
  "order.noRegions": "등록된 매장이 없습니다",
  "order.submit": "주문",
  "order.placing": "주문 중…",
  "order.placed": "주문 {id}: {status}",
  "mypage.title": "주문 현황",
  "mypage.empty": "아직 주문이 없습니다.",
  "mypage.loading": "불러오는 중…",
  "order.id": "주문 {id}",
  "order.store": "매장 {id}",
  "order.delivery": "배달 {id}",
  "cancel": "주문 취소",
  "cancelled.ok": "주문 {id}이(가) 취소되었습니다.",
  "reorder": "다시 주문",
  "busy.countdown": "{s}초 후에 다시 주문할 수 있습니다.",
  "busy.ready": "지금 다시 주문할 수 있습니다.",
  "reason.NO_OPEN_STORE": "이 지역에 지금 영업 중인 매장이 없습니다.",
  "reason.STORE_BUSY": "매장이 바빠서 주문을 받지 못했습니다.",
  "status.ORDERED": "주문됨",
  "status.RECEIVED": "매장 접수",
  "status.COOKED": "조리 완료",
  "status.DELIVERY_STARTED": "배달 시작",
  "status.CANCELLED": "취소됨",
  "status.REJECTED": "거절됨",
  "agent.title": "고객 찾기",
  "agent.search": "고객 아이디 검색",
  "agent.searchHelp": "아이디 앞부분을 입력하세요. Enter: 첫 번째 고객 열기",
  "agent.open": "고객 {id} 열기",
  "agent.orders": "주문 {n}건",
  "agent.none": "검색된 고객이 없습니다.",
  "agent.pick": "고객을 고르면 그 고객의 주문 현황이 실시간으로 보입니다.",
  "agent.customer": "고객 {id}",
  "master.title": "매장 보드",
  "master.store": "매장",
  "master.open": "영업 중",
  "master.pickStore": "매장을 고르세요",
  "master.cook": "조리 완료",
  "master.new": "새 주문",
  "master.active": "처리할 주문",
  "master.done": "완료된 주문",
  "master.empty": "처리할 주문이 없습니다.",
  "master.received": "접수 {t}",
  "admin.stores": "매장",
  "admin.register": "매장 등록",
  "admin.name": "매장 이름",
  "admin.region": "지역 (구)",
  "admin.openNew": "바로 영업 시작",
  "admin.registered": "매장 {name}이(가) 등록되었습니다.",
  "admin.open": "영업 중",
  "admin.closed": "영업 종료",
  "admin.unfinished": "진행 중 주문",
  "admin.board": "보드 보기",
  "admin.lookup": "주문 조회",
  "admin.orderId": "주문 번호",
  "admin.lookupSubmit": "조회",
  "admin.notFound": "주문 {id}을(를) 찾을 수 없습니다.",
  "admin.timeline": "이벤트 타임라인",
  "admin.event": "이벤트",
  "admin.producer": "생산자",
  "admin.written": "기록",
  "admin.published": "발행",
  "admin.consumed": "처리",
  "admin.pending": "발행 대기 ({n}회 시도)",
  "system.title": "시스템 상태",
  "system.refresh": "2초마다 새로 고침",
  "system.at": "기준 시각 {t}",
  "system.service": "서비스",
  "system.ready": "준비",
  "system.outbox": "아웃박스 대기",
  "system.oldest": "가장 오래된 대기",
  "system.queued": "큐 대기",
  "system.lag": "소비 지연",
  "system.dead": "데드 레터",
  "system.breakers": "서킷 브레이커",
  "system.yes": "예",
  "system.no": "아니오",
  "breaker.CLOSED": "닫힘 (정상)",
  "breaker.HALF_OPEN": "반열림 (시험 중)",
  "breaker.OPEN": "열림 (차단)",
  "err.UNAUTHENTICATED": "로그인이 필요합니다.",
  "err.FORBIDDEN": "이 작업을 할 권한이 없습니다.",
  "err.BAD_USER_INPUT": "입력이 올바르지 않습니다",
  "err.NOT_FOUND": "찾을 수 없습니다.",
  "err.CONFLICT": "지금 상태에서는 할 수 없습니다",
  "err.UNAVAILABLE": "서비스에 잠시 연결할 수 없습니다. 잠시 후 다시 시도하세요.",
  "err.INTERNAL": "서버 오류가 발생했습니다.",
  "err.NETWORK": "서버에 연결할 수 없습니다.",
  seconds: "{n}초",
  "field.order": "주문",
  "field.customer": "고객",
  "field.status": "상태",
  "notfound": "없는 페이지입니다.",
};

type Key = keyof typeof ko;

const en: Record<Key, string> = {
  title: "1588-pizza console",
  skip: "Skip to content",
  language: "Language",
  "conn.connecting": "Connecting",
  "conn.open": "Live",
  "conn.closed": "Disconnected",
  "conn.label": "Live connection",
  signout: "Sign out",
  "nav.label": "Menu",
  "nav.customer": "My orders",
  "nav.agent": "Agent",
  "nav.master": "Store board",
  "nav.admin": "Stores",
  "nav.orders": "Order lookup",
  "nav.system": "System",
  "nav.playground": "GraphQL playground",
  "role.CUSTOMER": "Customer",
  "role.AGENT": "Agent",
  "role.MASTER": "Store master",
  "role.ADMIN": "Admin",
  "signin.title": "Sign in",
  "signin.token": "Token (Bearer)",
  "signin.tokenHelp": "Paste a token: make run prints one per role, and this makes one:",
  "signin.submit": "Sign in",
  "signin.bad": "This is not a token",
  "signin.expired": "Your sign-in has expired. Sign in again.",
  "signin.dev": "Development sign-in",
  "signin.devHelp": "Only in development: pick a role and an id, and sign in with one click.",
  "signin.role": "Role",
  "signin.id.CUSTOMER": "Customer id",
  "signin.id.MASTER": "Store id",
  "signin.id.AGENT": "Agent name (optional)",
  "signin.id.ADMIN": "Admin name (optional)",
  "signin.devSubmit": "Sign in as this role",
  "signin.as": "Signed in: {role}",
  "order.title": "Place an order",
  "order.for": "Order for customer {id}",
  "order.pizza": "Pizza",
  "order.qty": "Quantity",
  "order.region": "Region",
  "order.noRegions": "No stores are registered",
  "order.submit": "Order",
  "order.placing": "Ordering…",
  "order.placed": "Order {id}: {status}",
  "mypage.title": "My orders",
  "mypage.empty": "No orders yet.",
  "mypage.loading": "Loading…",
  "order.id": "Order {id}",
  "order.store": "Store {id}",
  "order.delivery": "Delivery {id}",
  cancel: "Cancel order",
  "cancelled.ok": "Order {id} is cancelled.",
  reorder: "Order again",
  "busy.countdown": "You can order again in {s} s.",
  "busy.ready": "You can order again now.",
  "reason.NO_OPEN_STORE": "No store in this region is open right now.",
  "reason.STORE_BUSY": "The store was too busy to take the order.",
  "status.ORDERED": "Ordered",
  "status.RECEIVED": "Received",
  "status.COOKED": "Cooked",
  "status.DELIVERY_STARTED": "Out for delivery",
  "status.CANCELLED": "Cancelled",
  "status.REJECTED": "Rejected",
  "agent.title": "Find a customer",
  "agent.search": "Search customer id",
  "agent.searchHelp": "Type the start of an id. Enter opens the first customer.",
  "agent.open": "Open customer {id}",
  "agent.orders": "{n} orders",
  "agent.none": "No customer found.",
  "agent.pick": "Pick a customer to see their orders live.",
  "agent.customer": "Customer {id}",
  "master.title": "Store board",
  "master.store": "Store",
  "master.open": "Open",
  "master.pickStore": "Pick a store",
  "master.cook": "Mark cooked",
  "master.new": "New",
  "master.active": "To do",
  "master.done": "Done",
  "master.empty": "Nothing to do.",
  "master.received": "Received {t}",
  "admin.stores": "Stores",
  "admin.register": "Register a store",
  "admin.name": "Store name",
  "admin.region": "Region (district)",
  "admin.openNew": "Open at once",
  "admin.registered": "Store {name} is registered.",
  "admin.open": "Open",
  "admin.closed": "Closed",
  "admin.unfinished": "Unfinished orders",
  "admin.board": "Board",
  "admin.lookup": "Order lookup",
  "admin.orderId": "Order id",
  "admin.lookupSubmit": "Look up",
  "admin.notFound": "No order {id}.",
  "admin.timeline": "Event timeline",
  "admin.event": "Event",
  "admin.producer": "Producer",
  "admin.written": "Written",
  "admin.published": "Published",
  "admin.consumed": "Consumed",
  "admin.pending": "Not yet published ({n} attempts)",
  "system.title": "System",
  "system.refresh": "Refreshed every 2 s",
  "system.at": "As of {t}",
  "system.service": "Service",
  "system.ready": "Ready",
  "system.outbox": "Outbox backlog",
  "system.oldest": "Oldest pending",
  "system.queued": "Queued",
  "system.lag": "Consumer lag",
  "system.dead": "Dead letters",
  "system.breakers": "Circuit breakers",
  "system.yes": "yes",
  "system.no": "no",
  "breaker.CLOSED": "closed (normal)",
  "breaker.HALF_OPEN": "half-open (probing)",
  "breaker.OPEN": "open (refusing)",
  "err.UNAUTHENTICATED": "Please sign in.",
  "err.FORBIDDEN": "You may not do this.",
  "err.BAD_USER_INPUT": "Invalid input",
  "err.NOT_FOUND": "Not found.",
  "err.CONFLICT": "Not possible in the order's state",
  "err.UNAVAILABLE": "A service cannot be reached right now. Try again shortly.",
  "err.INTERNAL": "The server failed.",
  "err.NETWORK": "The server cannot be reached.",
  seconds: "{n} s",
  "field.order": "Order",
  "field.customer": "Customer",
  "field.status": "Status",
  notfound: "No such page.",
};

const dicts: Record<Lang, Record<Key, string>> = { ko, en };

export type T = (key: Key, vars?: Record<string, string | number>) => string;

export function translator(lang: Lang): T {
  const d = dicts[lang];
  return (key, vars) => {
    let s = d[key] ?? key;
    if (vars) for (const [k, v] of Object.entries(vars)) s = s.replace(`{${k}}`, String(v));
    return s;
  };
}

// has reports whether key names a text (for keys built from server values, such as a status).
export function has(key: string): key is Key {
  return key in ko;
}

export const LangContext = createContext<{ lang: Lang; t: T }>({ lang: "ko", t: translator("ko") });
export const useT = () => useContext(LangContext).t;
export const useLang = () => useContext(LangContext).lang;

const langKey = "pizza.lang"; // a preference, not a secret

export function initialLang(): Lang {
  try {
    const l = localStorage.getItem(langKey);
    if (l === "ko" || l === "en") return l;
  } catch {
    // no storage
  }
  return "ko";
}

export function rememberLang(l: Lang) {
  try {
    localStorage.setItem(langKey, l);
  } catch {
    // no storage
  }
}

// Dates and times in the chosen language, in the browser's time zone.
export function formatTime(lang: Lang, iso: string | null | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d.getTime())) return iso;
  return d.toLocaleTimeString(lang === "ko" ? "ko-KR" : "en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
