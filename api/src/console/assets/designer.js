// The flow designer's visual editor. The "Steps (JSON)" text is the flow's steps, always: the
// editor reads it, and every change made here is written back to it (and a change typed there
// redraws the editor); "Flow (YAML)" is the whole flow, written from the same state, and read
// back through the API when it is edited. Each step is a card drawn from its kind (the kinds,
// the keys each takes and the objects each can name come from the server). Field mappings are
// two columns: the field (offered from the connection's schema when it has one) and its value,
// a template, picked from a sample event's fields or typed. Suggestions are rules anyone can
// read (suggestFor below): the same field names always get the same suggestion, with the
// reason shown. After every change the flow is validated and previewed on the sample event
// (nothing is written), and each problem is shown next to the field it concerns.
"use strict";

(() => {
  const area = document.getElementById("flow-steps");
  const editor = document.getElementById("steps-editor");
  if (!area || !editor) return;
  const form = area.form;
  const yamlBox = document.getElementById("flow-yaml");
  const live = document.getElementById("live-preview");
  const previewOn = document.getElementById("preview-on");
  const newKind = document.getElementById("new-step-kind");
  const KINDS = JSON.parse(editor.dataset.kinds || "[]");
  const RECIPE_MAPS = JSON.parse(editor.dataset.recipeMaps || "[]");
  const TITLES = {
    upsert: "CRM write: update or create", create: "CRM write: create", update: "CRM write: update",
    find: "CRM find", "stripe.retrieve": "Stripe retrieve", "stripe.create": "Stripe create",
    "stripe.update": "Stripe update", email: "Email", http: "HTTP request",
    assert: "Assert: stop unless true", log: "Log a message", notify: "Notify the alert channels",
  };
  // Every part a card can show, in order: [key, caption, how it is edited].
  const PARTS = [
    ["object", "Object", "object"], ["record_id", "Record id", "text"],
    ["connection_id", "Own connection", "connection"], ["method", "Method", "method"],
    ["url", "URL", "text"], ["path", "Path", "text"], ["check", "Must be true", "text"],
    ["message", "Message", "text"], ["select", "Fields to read", "list"], ["expand", "Expand", "list"],
    ["stripe_account_id", "Stripe account", "text"], ["match", "Match", "map"],
    ["headers", "Headers", "map"], ["fields", "Fields", "map"], ["when", "Run only when", "text"],
    ["for_each", "Once per item of", "text"],
  ];
  // The parts of the kinds that take any key (CRM and Stripe writes, Stripe reads).
  const SHOWN = {
    upsert: ["object", "match", "fields", "when", "for_each"],
    create: ["object", "fields", "when", "for_each"],
    update: ["object", "record_id", "match", "fields", "when", "for_each"],
    "stripe.retrieve": ["object", "record_id", "expand", "stripe_account_id", "when", "for_each"],
    "stripe.create": ["object", "fields", "stripe_account_id", "when", "for_each"],
    "stripe.update": ["object", "record_id", "fields", "stripe_account_id", "when", "for_each"],
  };
  // Keys a card keeps though it does not show them (the JSON and YAML views edit them).
  const KEPT = ["id", "action", "fallback_fields", "associate"];
  const FIELD_NAMES = { email: ["to", "subject", "text", "html", "cc", "bcc", "reply_to"], notify: ["subject"] };
  const CRM = ["upsert", "create", "update", "find"];
  let steps = [];
  let leaves = []; // [path, value] of the sample event's object
  let schema = {}; // object -> [{name, label, required}]
  const unread = {}; // object -> why the CRM could not list its fields
  let lastValue = null; // the value input a picked field goes into

  function alert(text) {
    say("alert", text);
  }

  function read() {
    try {
      const parsed = JSON.parse(area.value || "[]");
      if (!Array.isArray(parsed)) throw new Error("the steps must be a list");
      steps = parsed;
      return true;
    } catch (e) {
      alert("Steps (JSON) is not valid: " + e.message);
      return false;
    }
  }

  function write() {
    area.value = JSON.stringify(steps, null, 2);
  }

  // Something changed: the JSON, the YAML and the live preview follow.
  function changed() {
    write();
    writeYaml();
    schedule();
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children) node.append(child);
    return node;
  }

  function labelled(text, control, path) {
    const id = "c" + Math.random().toString(36).slice(2);
    control.id = id;
    if (path) control.dataset.path = path;
    return [el("label", { htmlFor: id, textContent: text }), control];
  }

  const kindOf = (action) => KINDS.find((k) => k.action === action) || { keys: null, needs_object: true, objects: null };

  // The keys a step's card shows: what its kind takes (and names an object only when it does).
  function shownKeys(step) {
    const kind = kindOf(step.action);
    let keys = kind.keys ? PARTS.map(([key]) => key).filter((key) => kind.keys.includes(key)) : SHOWN[step.action] || [];
    if (!kind.needs_object) keys = keys.filter((key) => key !== "object");
    return keys;
  }

  // --- suggestions ------------------------------------------------------------------------
  const norm = (text) => String(text).toLowerCase().replace(/[^a-z0-9]/g, "");
  const last = (path) => path.split(".").pop();
  const find = (test) => leaves.find(([path]) => test(path));
  const named = (...names) => find((p) => names.includes(norm(last(p))));
  const inSample = (path) => leaves.some(([leaf]) => leaf === path || leaf.startsWith(path + ".") || leaf.startsWith(path + "["));

  // What a built-in recipe maps a field of this name to, when every field of the event it
  // reads is in the sample (so it fits this trigger).
  function fromRecipes(field) {
    const n = norm(field);
    for (const [name, value, recipe] of RECIPE_MAPS) {
      if (norm(name) !== n) continue;
      const paths = [...value.matchAll(/(?<![\w.])object(?:\.\w+)+/g)].map((m) => m[0]);
      if (paths.length && paths.every(inSample)) return { value, why: `as the recipe “${recipe}” maps it` };
    }
    return null;
  }

  // The suggested value for a CRM field, and why; null when no rule applies.
  function suggestFor(field) {
    const n = norm(field);
    const pick = (leaf, template, why) => (leaf ? { value: template(leaf[0]), why } : null);
    const name = named("name");
    if (n.includes("email")) {
      return pick(find((p) => norm(last(p)).includes("email")), (p) => `{{ ${p} | lower }}`, "an e-mail, in lower case");
    }
    const recipe = fromRecipes(field);
    if (recipe) return recipe;
    if (n.startsWith("first") || n === "givenname") {
      return pick(name, (p) => `{{ ${p} | first_name }}`, "the first word of the name");
    }
    if (n.startsWith("last") || n === "surname" || n === "familyname") {
      return pick(name, (p) => `{{ ${p} | last_name }}`, "the last word of the name");
    }
    if (n.includes("phone") || n.includes("mobile")) {
      return pick(find((p) => norm(last(p)).includes("phone")), (p) => `{{ ${p} }}`, "a phone number");
    }
    if (n.includes("currency")) {
      return pick(named("currency"), (p) => `{{ ${p} | upper }}`, "the ISO code, as CRMs show it");
    }
    if (["amount", "price", "total", "revenue", "value", "lastpayment"].some((w) => n.includes(w))) {
      const amount = named("amounttotal", "amountreceived", "amountpaid", "amount");
      return pick(amount, (p) => `{{ ${p} | major_units(object.currency) }}`,
        "Stripe amounts are in the currency's smallest unit");
    }
    if (n.includes("date") || n.endsWith("at") || n.includes("time")) {
      return pick(named("created"), (p) => `{{ ${p} | date }}`, "when it happened, as a date");
    }
    if (n.includes("company") || n.includes("organization") || n.includes("account")) {
      return pick(find((p) => norm(last(p)).includes("company")), (p) => `{{ ${p} }}`, "the company");
    }
    if (n === "name" || n.includes("fullname") || n.includes("dealname")) {
      return pick(name, (p) => `{{ ${p} }}`, "the name");
    }
    const same = find((p) => norm(last(p)) === n);
    return same ? { value: `{{ ${same[0]} }}`, why: "a field of the same name" } : null;
  }

  // --- drawing ----------------------------------------------------------------------------
  function fieldList(step) {
    const names = FIELD_NAMES[step.action];
    const known = CRM.includes(step.action) ? (schema[step.object || ""] || []) : (names || []).map((n) => ({ name: n, label: n }));
    const listId = `fields-${norm(step.action)}-${norm(step.object || "") || "none"}`;
    if (known.length && !document.getElementById(listId)) {
      const list = el("datalist", { id: listId });
      for (const f of known) list.append(el("option", { value: f.name, label: f.label + (f.required ? " (required)" : "") }));
      document.body.append(list);
    }
    return { known, listId };
  }

  function mapping(step, index, key, caption) {
    const entries = Object.entries(step[key] || {});
    const { known, listId } = fieldList(step);
    const valueLabel = key === "fields" ? "Value of" : `${caption} value of`;
    const rows = entries.map(([field, value], i) => {
      const path = `steps[${index}].${key}.${field}`;
      const name = el("input", { value: field, autocomplete: "off" });
      name.setAttribute("aria-label", `${caption} field ${i + 1} of ${step.id}`);
      if (known.length) name.setAttribute("list", listId);
      const input = el("input", { value: typeof value === "string" ? value : JSON.stringify(value) });
      input.setAttribute("aria-label", `${valueLabel} ${field || "field " + (i + 1)} in ${step.id}`);
      input.dataset.path = path;
      input.addEventListener("focus", () => { lastValue = input; });
      name.addEventListener("change", () => {
        const next = {};
        for (const [k, v] of Object.entries(step[key])) next[k === field ? name.value : k] = v;
        step[key] = next;
        changed();
        draw();
      });
      // A value that was not text (a number, a list, a map) stays JSON when it still reads as
      // JSON; anything else is a template.
      const structured = typeof value !== "string";
      input.addEventListener("input", () => {
        let next = input.value;
        if (structured) {
          try { next = JSON.parse(input.value); } catch (_) { /* a template now */ }
        }
        step[key][field] = next;
        changed();
      });
      const remove = el("button", { type: "button", textContent: `Remove ${field || "field"}` });
      remove.addEventListener("click", () => { delete step[key][field]; changed(); draw(); });
      const cells = [el("td", {}, name), el("td", {}, input), el("td", {}, remove)];
      const hint = value === "" && key !== "headers" ? suggestFor(field) : null;
      if (hint) {
        const use = el("button", { type: "button", className: "suggest", textContent: `Use ${hint.value} for ${field}` });
        use.title = hint.why;
        use.addEventListener("click", () => { step[key][field] = hint.value; changed(); draw(); });
        cells[1].append(el("span", { className: "hint", textContent: ` suggested: ${hint.why} ` }), use);
      }
      return el("tr", {}, ...cells);
    });
    const missing = known.filter((f) => f.required && key === "fields" && !(f.name in (step.fields || {})) && !(f.name in (step.match || {})));
    const add = el("button", { type: "button", textContent: `Add ${caption.toLowerCase()} field to ${step.id}` });
    add.addEventListener("click", () => {
      step[key] = step[key] || {};
      let field = "";
      for (const f of known) if (!(f.name in step[key]) && key !== "headers") { field = f.name; break; }
      step[key][field || `field_${Object.keys(step[key]).length + 1}`] = "";
      changed();
      draw();
    });
    const table = el("table", { className: "mapping" },
      el("caption", { textContent: `${caption} of ${step.id}` }),
      el("thead", {}, el("tr", {}, el("th", { scope: "col", textContent: key === "headers" ? "Header" : "Field" }),
        el("th", { scope: "col", textContent: "Value (a template)" }), el("th", { scope: "col", textContent: "" }))),
      el("tbody", {}, ...rows));
    table.dataset.path = `steps[${index}].${key}`;
    const out = [table, add];
    const why = CRM.includes(step.action) && key === "fields" && unread[step.object || ""];
    if (why) out.push(el("p", { className: "hint", textContent: `The CRM's fields of ${step.object} could not be read, so none are offered: ${why}` }));
    if (missing.length) out.push(el("p", { className: "error", textContent: `Required by the CRM and not mapped: ${missing.map((f) => f.name).join(", ")}` }));
    return out;
  }

  function options(select, values, current, blank) {
    if (blank !== undefined) select.append(el("option", { value: "", textContent: blank }));
    const list = current && !values.includes(current) ? [current, ...values] : values;
    for (const v of list) select.append(el("option", { value: v, textContent: v, selected: v === current }));
  }

  // One part of a card other than a mapping: a text, a list (comma-separated) or a choice.
  function part(step, index, key, caption, how) {
    const path = `steps[${index}].${key}`;
    const set = (value) => {
      if (value === "" || (Array.isArray(value) && !value.length)) delete step[key];
      else step[key] = value;
      changed();
    };
    const kind = kindOf(step.action);
    let control;
    if (how === "object" && kind.objects) {
      control = el("select");
      options(control, kind.objects, step.object, "(choose)");
      control.addEventListener("change", () => set(control.value));
    } else if (how === "connection" || how === "method") {
      control = el("select");
      if (how === "method") options(control, ["POST", "PUT", "PATCH", "DELETE"], step.method, "(POST)");
      else {
        const wanted = step.action === "email" ? "smtp" : "http";
        const mine = [...form.elements.connection_id.options].filter((o) => o.dataset.provider === wanted);
        control.append(el("option", { value: "", textContent: step.action === "email" ? "(choose an smtp connection)" : "(none: use the URL)" }));
        for (const o of mine) control.append(el("option", { value: o.value, textContent: o.textContent, selected: o.value === step.connection_id }));
      }
      control.addEventListener("change", () => set(control.value));
    } else if (how === "list") {
      control = el("input", { value: (step[key] || []).join(", ") });
      control.addEventListener("input", () => set(control.value.split(",").map((v) => v.trim()).filter(Boolean)));
    } else {
      control = el("input", { value: step[key] || "" });
      control.addEventListener("focus", () => { lastValue = control; });
      control.addEventListener("input", () => set(control.value));
      if (how === "object") {
        control.addEventListener("change", () => loadSchema(step.object).then(draw));
      }
    }
    return labelled(`${caption} of ${step.id}`, control, path);
  }

  // A step changes kind: it keeps what the new kind takes.
  function changeKind(step, action) {
    step.action = action;
    const keep = new Set([...KEPT, ...shownKeys(step)]);
    for (const key of Object.keys(step)) if (!keep.has(key)) delete step[key];
  }

  function card(step, index) {
    const box = el("fieldset", { className: "step" }, el("legend", { textContent: `Step ${index + 1}: ${step.id || "(no id)"} — ${TITLES[step.action] || step.action}` }));
    box.dataset.path = `steps[${index}]`;
    const id = el("input", { value: step.id || "" });
    id.addEventListener("change", () => { step.id = id.value; changed(); draw(); });
    const action = el("select");
    for (const k of KINDS) action.append(el("option", { value: k.action, textContent: `${TITLES[k.action] || k.action} (${k.action})`, selected: k.action === step.action }));
    action.addEventListener("change", () => { changeKind(step, action.value); changed(); draw(); });
    box.append(...labelled(`Id of step ${index + 1}`, id, `steps[${index}].id`),
      ...labelled(`Action of ${step.id}`, action, `steps[${index}].action`));
    for (const key of shownKeys(step)) {
      const [, caption, how] = PARTS.find(([k]) => k === key);
      if (how === "map") box.append(...mapping(step, index, key, caption));
      else box.append(...part(step, index, key, caption, how));
    }
    const move = (by) => {
      const to = index + by;
      if (to < 0 || to >= steps.length) return;
      [steps[index], steps[to]] = [steps[to], steps[index]];
      changed();
      draw();
    };
    const up = el("button", { type: "button", textContent: `Move ${step.id} up`, disabled: index === 0 });
    up.addEventListener("click", () => move(-1));
    const down = el("button", { type: "button", textContent: `Move ${step.id} down`, disabled: index === steps.length - 1 });
    down.addEventListener("click", () => move(1));
    const remove = el("button", { type: "button", textContent: `Remove step ${step.id}` });
    remove.addEventListener("click", () => { steps.splice(index, 1); changed(); draw(); });
    box.append(el("div", { className: "actions" }, up, down, remove));
    return box;
  }

  function draw() {
    editor.replaceChildren(...steps.map(card));
  }

  // --- the connection's schema and a sample event -------------------------------------------
  async function loadSchema(object) {
    const select = form.elements.connection_id;
    const connection = select.value;
    const { provider, status } = (select.selectedOptions[0] || { dataset: {} }).dataset;
    // HTTP and SMTP connections have no schema to read; one that is not active cannot answer.
    if (!object || !connection || schema[object] || ["http", "smtp"].includes(provider) || status !== "active") return;
    const reply = await call("GET", `/v1/connections/${connection}/fields?object=${encodeURIComponent(object)}`);
    if (reply.ok) schema[object] = (reply.data && reply.data.fields) || [];
    else unread[object] = problemText(reply.data, reply.status);
  }

  function flatten(value, path, out) {
    if (out.length > 300) return out;
    if (Array.isArray(value)) {
      if (value.length) flatten(value[0], `${path}[0]`, out);
    } else if (value && typeof value === "object") {
      for (const [k, v] of Object.entries(value)) flatten(v, `${path}.${k}`, out);
    } else if (value !== null && value !== undefined) {
      out.push([path, value]);
    }
    return out;
  }

  const triggerType = () => {
    const ticked = [...form.querySelectorAll("input[name=events]:checked")].map((c) => c.value);
    return ticked.find((t) => !t.includes("*"));
  };

  // The inbox's recent events of the type, to preview on instead of the newest.
  async function loadChoices(type) {
    const reply = await call("GET", `/v1/events?type=${encodeURIComponent(type)}&limit=20`);
    const events = reply.ok && reply.data && Array.isArray(reply.data.data) ? reply.data.data : [];
    const chosen = previewOn.value;
    previewOn.replaceChildren(el("option", { value: "", textContent: `The newest ${type} event` }));
    for (const e of events) {
      const when = e.received_at ? ` (${e.received_at.slice(0, 19).replace("T", " ")})` : "";
      previewOn.append(el("option", { value: e.id, textContent: `${e.stripe_event_id}${when}`, selected: e.id === chosen }));
    }
  }

  async function loadSample() {
    const status = document.getElementById("sample-status");
    const type = triggerType();
    const connection = form.elements.connection_id.value;
    if (!type || !connection) {
      status.textContent = "Tick a trigger event type (and choose a connection) to load a sample event.";
      return;
    }
    // A one-step probe flow, previewed on the chosen event, else the newest stored event of the
    // type (else Stripe's fixture of it): the answer carries the event.
    const probe = { name: "sample", connection_id: connection, trigger: { events: [type] },
      steps: [{ id: "sample", action: "log", message: "sample" }] };
    const on = previewOn.value ? { event_id: previewOn.value } : { latest: type };
    const [reply] = await Promise.all([call("POST", "/v1/flows/validate", { flow: probe, preview: on }), loadChoices(type)]);
    const answer = reply.ok ? reply.data : null;
    if (!answer || !answer.event) {
      status.textContent = `No sample of ${type} could be loaded.`;
      return;
    }
    leaves = flatten(answer.event.data.object, "object", []);
    status.textContent = `Fields of a ${answer.event.type || type} event (${answer.event.id}): choose a value box, then a field.`;
    const list = document.getElementById("payload-tree");
    list.replaceChildren(...leaves.map(([path, value]) => {
      const pick = el("button", { type: "button", className: "leaf", textContent: path });
      pick.setAttribute("aria-description", `Example: ${String(value).slice(0, 60)}`);
      pick.addEventListener("click", () => {
        if (!lastValue) { alert("Choose a value box first, then a field."); return; }
        lastValue.value = `{{ ${path} }}`;
        lastValue.dispatchEvent(new Event("input"));
        lastValue.focus();
      });
      return el("li", {}, pick, el("span", { className: "hint", textContent: ` ${String(value).slice(0, 40)}` }));
    }));
    draw();
    schedule();
  }

  // --- live preview, with each problem next to its field ------------------------------------
  let timer = null;
  let asked = 0;

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(preview, 600);
  }

  // The control a problem's path names, else the nearest one above it
  // (`steps[0].fields.email` → `steps[0].fields` → `steps[0]`).
  function controlFor(path) {
    let at = path;
    while (at) {
      const found = form.querySelector(`[data-path="${CSS.escape(at)}"]`);
      if (found) return found;
      const cut = Math.max(at.lastIndexOf("."), at.lastIndexOf("["));
      if (cut <= 0) return null;
      at = at.slice(0, cut);
    }
    return null;
  }

  function showProblems(errors) {
    for (const old of form.querySelectorAll(".inline-error")) old.remove();
    for (const marked of form.querySelectorAll("[data-problem]")) {
      delete marked.dataset.problem;
      marked.removeAttribute("aria-invalid");
      if (marked.dataset.describedby) marked.setAttribute("aria-describedby", marked.dataset.describedby);
      else marked.removeAttribute("aria-describedby");
    }
    errors.forEach((problem, n) => {
      const control = controlFor(problem.path);
      if (!control) return;
      const note = el("p", { className: "error inline-error", id: `problem-${n}`, textContent: `${problem.path}: ${problem.message}` });
      if (control.tagName === "FIELDSET") control.querySelector("legend").after(note);
      else control.after(note);
      // The problem becomes part of the control's description (what it had before comes back
      // once the problem is gone).
      if (!control.dataset.problem) {
        if (control.hasAttribute("aria-describedby")) control.dataset.describedby = control.getAttribute("aria-describedby");
        else delete control.dataset.describedby;
      }
      const current = control.dataset.problem ? control.getAttribute("aria-describedby") : control.dataset.describedby;
      control.setAttribute("aria-describedby", (current ? current + " " : "") + note.id);
      control.dataset.problem = "yes";
      // Only form controls are invalid; a table or a group is described by its problems.
      if (["INPUT", "SELECT", "TEXTAREA"].includes(control.tagName)) control.setAttribute("aria-invalid", "true");
    });
  }

  function operationLine(op) {
    const what = [op.action, op.object].filter(Boolean).join(" ");
    const parts = [];
    for (const key of ["match", "fields", "headers"]) {
      if (op[key] && Object.keys(op[key]).length) parts.push(`${key} ${JSON.stringify(op[key])}`);
    }
    for (const key of ["record_id", "url", "path", "method"]) if (op[key]) parts.push(`${key} ${op[key]}`);
    return `${what}${parts.length ? " — " + parts.join(", ") : ""}`;
  }

  function showPreview(answer, on) {
    if (!answer.valid) {
      live.replaceChildren(el("p", { className: "error", textContent: `${answer.errors.length} problem(s), shown next to their fields:` }),
        el("ul", {}, ...answer.errors.map((e) => el("li", { textContent: `${e.path}: ${e.message}` }))));
      return;
    }
    const result = answer.preview;
    if (!result) {
      live.replaceChildren(el("p", { textContent: "The flow is valid. Tick a trigger event type to see what it would send." }));
      return;
    }
    if (!result.matched) {
      live.replaceChildren(el("p", { textContent: `The flow is valid; on ${on} it would do nothing: ${result.reason || "its trigger does not match"}.` }));
      return;
    }
    const items = result.operations.map((op) => el("li", {}, el("strong", { textContent: op.step }), `: ${operationLine(op)}`));
    const out = [el("p", { textContent: `On ${on} it would send:` }), el("ol", { className: "operations" }, ...items)];
    if (result.skipped && result.skipped.length) out.push(el("p", { className: "hint", textContent: `Skipped: ${result.skipped.join(", ")}` }));
    live.replaceChildren(...out);
  }

  async function preview() {
    let flow;
    try { flow = bodies.flow(form); } catch (e) { live.replaceChildren(el("p", { className: "error", textContent: e.message })); return; }
    const type = triggerType();
    const chosen = previewOn.value;
    const on = chosen ? { event_id: chosen } : type ? { latest: type } : null;
    const mine = ++asked;
    const reply = await call("POST", "/v1/flows/validate", on ? { flow, preview: on } : { flow });
    if (mine !== asked) return; // a later change has asked since
    if (!reply.ok) {
      live.replaceChildren(el("p", { className: "error", textContent: problemText(reply.data, reply.status) }));
      return;
    }
    showProblems(reply.data.errors || []);
    const event = reply.data.event;
    showPreview(reply.data, event ? `${event.type} ${event.id}` : "the event");
  }

  // --- the YAML view ----------------------------------------------------------------------
  const isMap = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const isBlock = (v) => (Array.isArray(v) && v.length > 0) || (isMap(v) && Object.keys(v).length > 0);
  const WORDS = /^(true|false|null|yes|no|on|off|y|n|~)$/i;

  // A scalar as YAML: plain when it cannot be read as anything else, else double-quoted (JSON's
  // quoting is YAML's), with the characters YAML does not allow raw escaped.
  function scalar(v) {
    if (Array.isArray(v)) return "[]";
    if (isMap(v)) return "{}";
    if (v === null || typeof v === "number" || typeof v === "boolean") return String(v);
    const text = String(v);
    if (/^[A-Za-z_][\w ./-]*$/.test(text) && !/ $/.test(text) && !WORDS.test(text)) return text;
    return JSON.stringify(text).replace(/[\u007f-\u009f\u2028\u2029\ufeff]/g,
      (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  }

  function yamlLines(value, indent) {
    const pad = " ".repeat(indent);
    if (Array.isArray(value) && value.length) {
      return value.flatMap((item) => {
        if (!isBlock(item)) return [`${pad}- ${scalar(item)}`];
        const inner = yamlLines(item, indent + 2);
        inner[0] = `${pad}- ${inner[0].slice(indent + 2)}`;
        return inner;
      });
    }
    if (isMap(value) && Object.keys(value).length) {
      return Object.entries(value).flatMap(([k, v]) =>
        isBlock(v) ? [`${pad}${scalar(k)}:`, ...yamlLines(v, indent + 2)] : [`${pad}${scalar(k)}: ${scalar(v)}`]);
    }
    return [pad + scalar(value)];
  }

  function writeYaml() {
    if (!yamlBox || document.activeElement === yamlBox) return;
    try { yamlBox.value = yamlLines(bodies.flow(form), 0).join("\n") + "\n"; } catch (_) { /* the JSON says what is wrong */ }
  }

  // The YAML was edited: the API reads it, and the form and the editor take the flow it read.
  async function readYaml() {
    const reply = await call("POST", "/v1/flows/validate", new Blob([yamlBox.value], { type: "application/yaml" }));
    if (!reply.ok) { alert("Flow (YAML): " + problemText(reply.data, reply.status)); return; }
    const flow = reply.data.flow;
    if (!isMap(flow) || !Array.isArray(flow.steps)) {
      alert("Flow (YAML) must be a flow: a map with name, connection_id, trigger and a list of steps.");
      return;
    }
    form.dataset.base = JSON.stringify(flow);
    form.elements.name.value = flow.name || "";
    if (flow.connection_id) form.elements.connection_id.value = flow.connection_id;
    const events = (flow.trigger && flow.trigger.events) || [];
    for (const box of form.querySelectorAll("input[name=events]")) box.checked = events.includes(box.value);
    const listed = [...form.querySelectorAll("input[name=events]")].map((b) => b.value);
    const unknown = events.filter((e) => !listed.includes(e));
    steps = flow.steps;
    write();
    await Promise.all(steps.map((s) => loadSchema(s.object)));
    draw();
    if (unknown.length) alert(`Flow (YAML) names event types the designer does not list: ${unknown.join(", ")}`);
    else say("status", "The editor now shows the flow as the YAML has it.");
    schedule();
  }

  // --- wiring -----------------------------------------------------------------------------
  for (const k of KINDS) newKind.append(el("option", { value: k.action, textContent: `${TITLES[k.action] || k.action} (${k.action})` }));
  area.addEventListener("change", () => { if (read()) { draw(); writeYaml(); schedule(); } });
  if (yamlBox) yamlBox.addEventListener("change", readYaml);
  form.elements.name.dataset.path = "name";
  form.elements.connection_id.dataset.path = "connection_id";
  const types = document.getElementById("event-types");
  if (types) types.closest("fieldset").dataset.path = "trigger";
  // The flow's own fields (name, connection, event types) change the YAML and the preview too.
  form.addEventListener("change", (event) => {
    const target = event.target;
    if (target === area || target === yamlBox || editor.contains(target)) return;
    if (target === previewOn || target.name === "events") {
      const type = triggerType();
      if (target.name === "events" && type) loadChoices(type);
    }
    writeYaml();
    schedule();
  });
  document.getElementById("add-step").addEventListener("click", () => {
    const step = { id: `step${steps.length + 1}`, action: newKind.value || "upsert" };
    for (const key of shownKeys(step)) {
      const how = (PARTS.find(([k]) => k === key) || [])[2];
      if (how === "map" && key !== "headers") step[key] = {};
    }
    if (!kindOf(step.action).needs_object) delete step.object;
    else step.object = "";
    steps.push(step);
    changed();
    draw();
  });
  document.getElementById("load-sample").addEventListener("click", loadSample);
  if (read()) {
    Promise.all(steps.map((s) => loadSchema(s.object))).finally(() => { draw(); writeYaml(); schedule(); });
  }
})();
