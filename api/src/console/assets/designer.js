// The flow designer's visual editor. The "Steps (JSON)" text is the flow's steps, always: the
// editor reads it, and every change made here is written back to it (and a change typed there
// redraws the editor). Field mappings are two columns: the CRM field (offered from the
// connection's schema when it has one) and its value, a template, picked from a sample event's
// fields or typed. Suggestions are rules anyone can read (suggestFor below): the same field
// names always get the same suggestion, with the reason shown.
"use strict";

(() => {
  const area = document.getElementById("flow-steps");
  const editor = document.getElementById("steps-editor");
  if (!area || !editor) return;
  const form = area.form;
  const ACTIONS = ["upsert", "create", "update", "find", "stripe.retrieve", "email", "http", "assert", "log", "notify"];
  const MATCHING = ["upsert", "update", "find"];
  let steps = [];
  let leaves = []; // [path, value] of the sample event's object
  let schema = {}; // object -> [{name, label, required}]
  let lastValue = null; // the value input a picked field goes into

  function alert(text) {
    const box = document.getElementById("alert");
    box.textContent = text;
    box.hidden = false;
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

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children) node.append(child);
    return node;
  }

  function labelled(text, control) {
    const id = "c" + Math.random().toString(36).slice(2);
    control.id = id;
    return [el("label", { htmlFor: id, textContent: text }), control];
  }

  // --- suggestions ------------------------------------------------------------------------
  const norm = (text) => String(text).toLowerCase().replace(/[^a-z0-9]/g, "");
  const last = (path) => path.split(".").pop();
  const find = (test) => leaves.find(([path]) => test(path));
  const named = (...names) => find((p) => names.includes(norm(last(p))));

  // The suggested value for a CRM field, and why; null when no rule applies.
  function suggestFor(field) {
    const n = norm(field);
    const pick = (leaf, template, why) => (leaf ? { value: template(leaf[0]), why } : null);
    const name = named("name");
    if (n.includes("email")) {
      return pick(find((p) => norm(last(p)).includes("email")), (p) => `{{ ${p} | lower }}`, "an e-mail, in lower case");
    }
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
  function mapping(step, key, caption) {
    const entries = Object.entries(step[key] || {});
    const object = step.object || "";
    const known = schema[object] || [];
    const listId = `fields-${norm(object) || "none"}`;
    if (known.length && !document.getElementById(listId)) {
      const list = el("datalist", { id: listId });
      for (const f of known) list.append(el("option", { value: f.name, label: f.label + (f.required ? " (required)" : "") }));
      document.body.append(list);
    }
    const rows = entries.map(([field, value], i) => {
      const name = el("input", { value: field, autocomplete: "off" });
      name.setAttribute("aria-label", `${caption} field ${i + 1} of ${step.id}`);
      if (known.length) name.setAttribute("list", listId);
      const input = el("input", { value: typeof value === "string" ? value : JSON.stringify(value) });
      input.setAttribute("aria-label", `Value of ${field || "field " + (i + 1)} in ${step.id}`);
      input.addEventListener("focus", () => { lastValue = input; });
      const rename = () => {
        const next = {};
        for (const [k, v] of Object.entries(step[key])) next[k === field ? name.value : k] = v;
        step[key] = next;
        write();
        draw();
      };
      name.addEventListener("change", rename);
      // A value that was not text (a number, a list, a map) stays JSON when it still reads as
      // JSON; anything else is a template.
      const structured = typeof value !== "string";
      input.addEventListener("input", () => {
        let next = input.value;
        if (structured) {
          try { next = JSON.parse(input.value); } catch (_) { /* a template now */ }
        }
        step[key][field] = next;
        write();
      });
      const remove = el("button", { type: "button", textContent: `Remove ${field || "field"}` });
      remove.addEventListener("click", () => { delete step[key][field]; write(); draw(); });
      const cells = [el("td", {}, name), el("td", {}, input), el("td", {}, remove)];
      const hint = value === "" ? suggestFor(field) : null;
      if (hint) {
        const use = el("button", { type: "button", className: "suggest", textContent: `Use ${hint.value} for ${field}` });
        use.title = hint.why;
        use.addEventListener("click", () => { step[key][field] = hint.value; write(); draw(); });
        cells[1].append(el("span", { className: "hint", textContent: ` suggested: ${hint.why} ` }), use);
      }
      return el("tr", {}, ...cells);
    });
    const missing = known.filter((f) => f.required && key === "fields" && !(f.name in (step.fields || {})) && !(f.name in (step.match || {})));
    const add = el("button", { type: "button", textContent: `Add ${caption.toLowerCase()} field to ${step.id}` });
    add.addEventListener("click", () => {
      step[key] = step[key] || {};
      let field = "";
      for (const f of known) if (!(f.name in step[key])) { field = f.name; break; }
      step[key][field || `field_${Object.keys(step[key]).length + 1}`] = "";
      write();
      draw();
    });
    const table = el("table", { className: "mapping" },
      el("caption", { textContent: `${caption} of ${step.id}` }),
      el("thead", {}, el("tr", {}, el("th", { scope: "col", textContent: "CRM field" }),
        el("th", { scope: "col", textContent: "Value (a template)" }), el("th", { scope: "col", textContent: "" }))),
      el("tbody", {}, ...rows));
    const out = [table, add];
    if (missing.length) out.push(el("p", { className: "error", textContent: `Required by the CRM and not mapped: ${missing.map((f) => f.name).join(", ")}` }));
    return out;
  }

  function card(step, index) {
    const box = el("fieldset", { className: "step" }, el("legend", { textContent: `Step ${index + 1}: ${step.id || "(no id)"}` }));
    const id = el("input", { value: step.id || "" });
    id.addEventListener("change", () => { step.id = id.value; write(); draw(); });
    const action = el("select");
    for (const a of ACTIONS) action.append(el("option", { value: a, textContent: a, selected: a === step.action }));
    action.addEventListener("change", () => { step.action = action.value; write(); draw(); });
    const object = el("input", { value: step.object || "" });
    object.addEventListener("change", () => { step.object = object.value; write(); loadSchema(step.object).then(draw); });
    box.append(...labelled(`Id of step ${index + 1}`, id), ...labelled(`Action of ${step.id}`, action),
      ...labelled(`Object of ${step.id}`, object));
    if (MATCHING.includes(step.action)) box.append(...mapping(step, "match", "Match"));
    if (step.action !== "find") box.append(...mapping(step, "fields", "Fields"));
    const move = (by) => {
      const to = index + by;
      if (to < 0 || to >= steps.length) return;
      [steps[index], steps[to]] = [steps[to], steps[index]];
      write();
      draw();
    };
    const up = el("button", { type: "button", textContent: `Move ${step.id} up`, disabled: index === 0 });
    up.addEventListener("click", () => move(-1));
    const down = el("button", { type: "button", textContent: `Move ${step.id} down`, disabled: index === steps.length - 1 });
    down.addEventListener("click", () => move(1));
    const remove = el("button", { type: "button", textContent: `Remove step ${step.id}` });
    remove.addEventListener("click", () => { steps.splice(index, 1); write(); draw(); });
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
    const provider = (select.selectedOptions[0] || { dataset: {} }).dataset.provider;
    // HTTP and SMTP connections have no schema to read.
    if (!object || !connection || schema[object] || ["http", "smtp"].includes(provider)) return;
    const response = await fetch(`/v1/connections/${connection}/fields?object=${encodeURIComponent(object)}`, { credentials: "same-origin" });
    if (!response.ok) return;
    const answer = await response.json();
    schema[object] = answer.fields || [];
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

  async function loadSample() {
    const status = document.getElementById("sample-status");
    const type = (form.querySelector("input[name=events]:checked") || {}).value;
    const connection = form.elements.connection_id.value;
    if (!type || !connection) {
      status.textContent = "Tick a trigger event type (and choose a connection) to load a sample event.";
      return;
    }
    // A one-step probe flow, previewed on the newest stored event of the type (else Stripe's
    // fixture of it): the answer carries the event.
    const probe = { name: "sample", connection_id: connection, trigger: { events: [type] },
      steps: [{ id: "sample", action: "log", message: "sample" }] };
    const reply = await call("POST", "/v1/flows/validate", { flow: probe, preview: { latest: type } });
    const answer = reply.ok ? reply.data : null;
    if (!answer || !answer.event) {
      status.textContent = `No sample of ${type} could be loaded.`;
      return;
    }
    leaves = flatten(answer.event.data.object, "object", []);
    status.textContent = `Fields of a ${type} event (${answer.event.id}): choose a value box, then a field.`;
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
  }

  area.addEventListener("change", () => { if (read()) draw(); });
  document.getElementById("add-step").addEventListener("click", () => {
    steps.push({ id: `step${steps.length + 1}`, action: "upsert", object: "", match: {}, fields: {} });
    write();
    draw();
  });
  document.getElementById("load-sample").addEventListener("click", loadSample);
  if (read()) {
    Promise.all(steps.map((s) => loadSchema(s.object))).finally(draw);
  }
})();
