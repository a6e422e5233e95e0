// Sign in: paste a bearer token; in development, one click as any role and id.
import { useState } from "preact/hooks";
import { useT } from "../i18n";
import { decode, devSignInURL, devToken, roles, type Role, type Session } from "../session";
import { ErrorLine } from "./orders";

export function SignIn({ onSession, notice }: { onSession: (s: Session) => void; notice?: string }) {
  const t = useT();
  const [problem, setProblem] = useState<{ code: string; message: string } | null>(null);
  const dev = devSignInURL();

  // Forms read their fields when submitted (not from state), so whatever filled them counts.
  const submit = (e: Event) => {
    e.preventDefault();
    const token = String(new FormData(e.currentTarget as HTMLFormElement).get("token") ?? "");
    try {
      onSession(decode(token));
    } catch (err) {
      setProblem({ code: "BAD_USER_INPUT", message: `${t("signin.bad")}: ${(err as Error).message}` });
    }
  };

  return (
    <div class="signin">
      <section class="card" aria-labelledby="signin-title">
        <h2 id="signin-title">{t("signin.title")}</h2>
        {notice && (
          <p class="notice" role="status">
            {notice}
          </p>
        )}
        <form onSubmit={submit}>
          <label for="token">{t("signin.token")}</label>
          <textarea
            id="token"
            name="token"
            rows={4}
            spellcheck={false}
            autocomplete="off"
            aria-describedby="token-help"
            required
          />
          <p id="token-help" class="help">
            {t("signin.tokenHelp")} <code>pizza token --role customer --customer 1</code>
          </p>
          <button id="signin" type="submit" class="primary">
            {t("signin.submit")}
          </button>
        </form>
        {problem && <ErrorLine error={problem} />}
      </section>
      {dev && <DevSignIn url={dev} onSession={onSession} />}
    </div>
  );
}

function DevSignIn({ url, onSession }: { url: string; onSession: (s: Session) => void }) {
  const t = useT();
  const [role, setRole] = useState<Role>("CUSTOMER");
  const [id, setId] = useState("1");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<{ code: string; message: string } | null>(null);
  const needsId = role === "CUSTOMER" || role === "MASTER";

  const submit = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    setBusy(true);
    setProblem(null);
    try {
      onSession(await devToken(url, String(form.get("role")) as Role, String(form.get("id") ?? "").trim()));
    } catch (err) {
      setProblem({ code: (err as { code?: string }).code ?? "NETWORK", message: (err as Error).message });
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="card dev" aria-labelledby="dev-title">
      <h2 id="dev-title">{t("signin.dev")}</h2>
      <p class="help">{t("signin.devHelp")}</p>
      <form onSubmit={submit}>
        <div class="fields">
          <label>
            {t("signin.role")}
            <select
              id="dev-role"
              name="role"
              value={role}
              onChange={(e) => {
                const r = e.currentTarget.value as Role;
                setRole(r);
                setId(r === "CUSTOMER" || r === "MASTER" ? "1" : "");
              }}
            >
              {roles.map((r) => (
                <option key={r} value={r}>
                  {r} · {t(`role.${r}`)}
                </option>
              ))}
            </select>
          </label>
          <label>
            {t(`signin.id.${role}`)}
            <input id="dev-id" name="id" value={id} required={needsId} autocomplete="off" onInput={(e) => setId(e.currentTarget.value)} />
          </label>
        </div>
        <button id="dev-signin" type="submit" class="primary" disabled={busy}>
          {t("signin.devSubmit")}
        </button>
      </form>
      {problem && <ErrorLine error={problem} />}
    </section>
  );
}
