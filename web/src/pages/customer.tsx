// The customer's page: order, and watch every order live.
import { useT } from "../i18n";
import { MyPage, OrderForm } from "./orders";

export function CustomerPage({ customerId }: { customerId: string }) {
  const t = useT();
  return (
    <div class="grid">
      <OrderForm customerId={customerId} heading={t("order.title")} />
      <MyPage customerId={customerId} heading={t("mypage.title")} />
    </div>
  );
}
