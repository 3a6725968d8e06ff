// Tributary console: every change is a documented /v1 request, sent with the session cookie
// and the session's CSRF token (the tributary_csrf cookie, as the X-CSRF-Token header). A
// refused request shows the API's problem, field by field, in the page's alert region.
"use strict";

function csrf() {
  const found = document.cookie.match(/(?:^|;\s*)tributary_csrf=([^;]+)/);
  return found ? decodeURIComponent(found[1]) : "";
}

async function call(method, url, body, ifMatch, renewed) {
  const init = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } };
  if (ifMatch) init.headers["If-Match"] = ifMatch;
  if (body instanceof Blob) {
    // A document sent as it is (the designer's YAML), with its own media type.
    init.headers["Content-Type"] = body.type;
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  // The session's access token expired: renew it once, then send the request again.
  if (response.status === 401 && !renewed) {
    const renewal = await fetch("/console/refresh", {
      method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf() },
    });
    if (renewal.ok) return call(method, url, body, ifMatch, true);
  }
  let data = null;
  try { data = await response.json(); } catch (_) { /* no body */ }
  return { ok: response.ok, status: response.status, data };
}

function problemText(data, status) {
  if (!data) return "The request failed (" + status + ").";
  let text = data.detail || data.title || "The request failed (" + status + ").";
  if (Array.isArray(data.errors) && data.errors.length) {
    text += ": " + data.errors.map((e) => e.field + ": " + e.message).join("; ");
  }
  return text;
}

function say(kind, text) {
  const alert = document.getElementById("alert");
  const status = document.getElementById("status");
  if (kind === "alert") {
    status.textContent = "";
    alert.textContent = text;
    alert.hidden = false;
    alert.focus && alert.setAttribute("tabindex", "-1");
  } else {
    alert.hidden = true;
    alert.textContent = "";
    status.textContent = text;
  }
}

function parseJson(text, field) {
  try { return JSON.parse(text); } catch (e) { throw new Error(field + " is not valid JSON: " + e.message); }
}

// What each kind of form sends.
const bodies = {
  connection: (f) => ({ name: f.elements.name.value, provider: "sandbox", auth: { type: "none" } }),
  settings: (f) => ({ settings: parseJson(f.elements.settings.value, "Settings") }),
  "stripe-account": (f) => ({ name: f.elements.name.value, webhook_secret: f.elements.webhook_secret.value }),
  "test-event": (f) => ({ type: f.elements.type.value }),
  // No password for a person who already has an account in another tenant (they join with theirs).
  user: (f) => Object.assign({ email: f.elements.email.value, role: f.elements.role.value },
    f.elements.password.value ? { password: f.elements.password.value } : {}),
  role: (f) => ({ role: f.elements.role.value }),
  "api-key": (f) => ({ name: f.elements.name.value, role: f.elements.role.value }),
  environment: (f) => ({ name: f.elements.name.value }),
  channel: (f) => ({ name: f.elements.name.value, kind: f.elements.kind.value, url: f.elements.url.value }),
  secret: (f) => ({ secret: f.elements.secret.value }),
  // Any provider, as the generated form describes it: empty fields are left out.
  "connection-full": (f) => {
    const auth = { type: f.dataset.auth };
    for (const input of f.querySelectorAll("[data-auth-field]")) {
      if (input.value !== "") auth[input.dataset.authField] = input.value;
    }
    const settings = {};
    for (const input of f.querySelectorAll("[data-setting]")) {
      const kind = input.dataset.input;
      const name = input.dataset.setting;
      if (kind === "bool") { if (input.checked) settings[name] = true; continue; }
      if (input.value.trim() === "") continue;
      if (kind === "number") settings[name] = Number(input.value);
      else if (kind === "list") settings[name] = input.value.split(",").map((v) => v.trim()).filter(Boolean);
      else if (kind === "json") settings[name] = parseJson(input.value, name);
      else settings[name] = input.value.trim();
    }
    return { name: f.elements.name.value, provider: f.dataset.provider, auth, settings };
  },
  oauth: (f) => ({ name: f.elements.name.value, provider: f.elements.provider.value, auth: { type: "oauth" } }),
  backfill: (f) => ({ since: new Date(f.elements.since.value).toISOString() }),
  // A flow being edited keeps what the designer does not show (filter, source, refetch…).
  flow: (f) => {
    const base = f.dataset.base ? JSON.parse(f.dataset.base) : {};
    return Object.assign(base, {
      name: f.elements.name.value,
      connection_id: f.elements.connection_id.value,
      trigger: Object.assign(base.trigger || {}, {
        events: Array.from(f.querySelectorAll("input[name=events]:checked")).map((c) => c.value),
      }),
      steps: parseJson(f.elements.steps.value, "Steps (JSON)"),
    });
  },
};

// What a preview would send, one line per operation.
function previewText(preview, on) {
  if (!preview) return "The flow is valid. Tick a trigger event type to preview it on an event.";
  if (!preview.matched) return "The flow is valid; on a " + on + " event it would do nothing: " + (preview.reason || "its trigger does not match") + ".";
  const lines = preview.operations.map((op) => {
    const what = [op.action, op.object].filter(Boolean).join(" ");
    const parts = [];
    if (op.match && Object.keys(op.match).length) parts.push("match " + JSON.stringify(op.match));
    if (op.fields && Object.keys(op.fields).length) parts.push("fields " + JSON.stringify(op.fields));
    return op.step + ": " + what + (parts.length ? " — " + parts.join(", ") : "");
  });
  if (preview.skipped && preview.skipped.length) lines.push("skipped: " + preview.skipped.join(", "));
  return "Preview on a " + on + " event:\n" + lines.join("\n");
}

function after(done, data) {
  if (done === "reload") location.reload();
  else if (done) location.assign(done);
}

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!form.dataset.api) return;
  event.preventDefault();
  let body;
  try { body = bodies[form.dataset.kind](form); } catch (e) { say("alert", e.message); return; }
  const button = form.querySelector("button[type=submit]");
  if (button) button.disabled = true;
  const answer = await call(form.dataset.method || "POST", form.dataset.api, body, form.dataset.ifMatch);
  if (button) button.disabled = false;
  if (!answer.ok) { say("alert", problemText(answer.data, answer.status)); return; }
  if ((form.dataset.kind === "oauth" || form.dataset.kind === "connection-full") && answer.data.authorize_url) {
    location.assign(answer.data.authorize_url);
    return;
  }
  if (form.dataset.kind === "api-key") {
    say("status", "Your new key (shown once; copy it now): " + answer.data.key);
    return;
  }
  if (form.dataset.kind === "channel") {
    say("status", "Channel added." + (answer.data.secret ? " Its signing secret (shown once): " + answer.data.secret : "") + " Reload to see it listed.");
    return;
  }
  if (form.dataset.kind === "test-event") {
    say("status", "Sent " + body.type + " as " + ((answer.data && (answer.data.stripe_event_id || answer.data.event_id)) || "a test event") + ".");
    return;
  }
  after(form.dataset.done, answer.data);
});

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-post], button[data-check]");
  if (!button) return;
  if (button.dataset.check) {
    let flow;
    try { flow = bodies.flow(button.form); } catch (e) { say("alert", e.message); return; }
    const on = flow.trigger.events[0];
    const body = on ? { flow, preview: { latest: on } } : { flow };
    const answer = await call("POST", button.dataset.check, body);
    if (!answer.ok) { say("alert", problemText(answer.data, answer.status)); return; }
    const result = answer.data;
    if (!result.valid) {
      say("alert", "The flow has problems: " + result.errors.map((e) => e.path + ": " + e.message).join("; "));
      return;
    }
    say("status", previewText(result.preview, on));
    return;
  }
  button.disabled = true;
  const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
  const answer = await call(button.dataset.method || "POST", button.dataset.post, body, button.dataset.ifMatch);
  button.disabled = false;
  if (!answer.ok) { say("alert", problemText(answer.data, answer.status)); return; }
  if (button.dataset.said) say("status", button.dataset.said);
  if (button.dataset.job && answer.data && answer.data.job_id) {
    follow(answer.data.job_id, document.getElementById(button.dataset.job));
    return;
  }
  if (button.dataset.follow && answer.data && answer.data[button.dataset.follow]) {
    location.assign(answer.data[button.dataset.follow]);
    return;
  }
  if (button.dataset.report === "test") {
    const passed = answer.data && answer.data.ok;
    say(passed ? "status" : "alert", "Connection test " + (passed ? "passed: " : "failed: ") + ((answer.data && answer.data.detail) || ""));
    return;
  }
  after(button.dataset.done, answer.data);
});

// A bulk job's progress (GET /v1/bulk-jobs/{id}), once a second until it ends; then the page
// reloads to list what is left, and says the outcome.
async function follow(id, box) {
  const bar = box.querySelector("progress");
  const line = box.querySelector("p");
  box.hidden = false;
  for (;;) {
    const answer = await call("GET", "/v1/bulk-jobs/" + id);
    if (!answer.ok) { say("alert", problemText(answer.data, answer.status)); return; }
    const job = answer.data;
    bar.max = Math.max(job.total, 1);
    bar.value = job.done + job.failed;
    line.textContent = `${job.done} retried, ${job.failed} not retried, of ${job.total} (${job.status})` + (job.last_error ? `; ${job.last_error}` : "");
    if (job.finished_at) {
      // Said again once the page has reloaded to list what is left.
      sessionStorage.setItem("tributary-said", JSON.stringify([job.failed ? "alert" : "status",
        `Retry all ended: ${line.textContent}. The list shows what is left.`]));
      location.reload();
      return;
    }
    await new Promise((done) => setTimeout(done, 1000));
  }
}

// Filters a list of choices as the user types (the designer's event types).
document.addEventListener("input", (event) => {
  const input = event.target;
  if (!input.dataset.filter) return;
  const term = input.value.trim().toLowerCase();
  for (const item of document.getElementById(input.dataset.filter).children) {
    item.hidden = term !== "" && !item.textContent.toLowerCase().includes(term);
  }
});

// A list that keeps itself current (Events): every 5 seconds, while its checkbox is ticked and
// the tab is visible, the page is read again and the list replaced.
const live = document.querySelector("[data-live]");
if (live) {
  const toggle = document.getElementById(live.dataset.live);
  setInterval(async () => {
    if (!toggle || !toggle.checked || document.hidden) return;
    try {
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (!response.ok || response.redirected) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById(live.id);
      if (fresh && fresh.innerHTML !== live.innerHTML) live.innerHTML = fresh.innerHTML;
    } catch (_) { /* the next tick tries again */ }
  }, 5000);
}

// What a page said just before it reloaded itself (a bulk job's outcome).
document.addEventListener("DOMContentLoaded", () => {
  const said = sessionStorage.getItem("tributary-said");
  if (!said) return;
  sessionStorage.removeItem("tributary-said");
  try {
    const [kind, text] = JSON.parse(said);
    say(kind, text);
  } catch (_) { /* not ours */ }
});
