// The README quick start through a TypeScript client generated from openapi/openapi.json:
// `openapi-typescript` types (./schema.d.ts, generated beside this file) and `openapi-fetch`.
// Usage: tsx quickstart.ts BASE_URL. Every step asserts its answer and prints one line.
import createClient from "openapi-fetch";
import type { paths } from "./schema";

function fail(message: string): never {
  console.error(`FAIL ${message}`);
  process.exit(1);
}

// The body of a call's answer, after checking its HTTP status.
function step<T>(name: string, result: { data?: T; error?: unknown; response: Response }, status: number): T {
  if (result.response.status !== status || result.data === undefined) {
    fail(`${name}: HTTP ${result.response.status}, expected ${status}: ${JSON.stringify(result.error)}`);
  }
  console.log(`ok   ${name}`);
  return result.data;
}

const baseUrl = process.argv[2] ?? fail("usage: quickstart.ts BASE_URL");
const client = (token?: string) =>
  createClient<paths>({ baseUrl, headers: token ? { Authorization: `Bearer ${token}` } : {} });

const email = `ts-${crypto.randomUUID().slice(0, 12)}@example.com`;
const signup = step("signup", await client().POST("/v1/signup", {
  body: { tenant_name: "Acme (TypeScript client)", email, password: "correct horse battery" },
}), 201);
const api = client(signup.access_token);

const account = step("create Stripe account", await api.POST("/v1/stripe-accounts", {
  body: { name: "Acme test", webhook_secret: `whsec_${crypto.randomUUID().replaceAll("-", "")}` },
}), 201);
if (!account.webhook_url.startsWith(baseUrl)) fail(`webhook_url ${account.webhook_url}`);

const connection = step("create sandbox connection", await api.POST("/v1/connections", {
  body: { name: "Sandbox", provider: "sandbox" },
}), 201);
if (connection.status !== "active") fail(`connection status ${connection.status}`);

const templates = step("list flow templates", await api.GET("/v1/flow-templates"), 200);
const template = templates.data.find((t) => t.id === "sandbox-lead-from-checkout")
  ?? fail(`no sandbox template in ${templates.data.map((t) => t.id)}`);
const flow = step("create flow from template", await api.POST("/v1/flows", {
  body: { ...template.flow, connection_id: connection.id },
}), 201);
if (flow.version !== 1 || flow.connection_id !== connection.id) fail(`flow ${JSON.stringify(flow)}`);

const sent = step("send test event", await api.POST("/v1/stripe-accounts/{id}/test-events", {
  params: { path: { id: account.id } },
  body: { type: "checkout.session.completed" },
}), 202);

const deadline = Date.now() + 30_000;
let records = step("list sandbox records", await api.GET("/v1/connections/{id}/records", {
  params: { path: { id: connection.id }, query: { object: "leads" } },
}), 200);
while (records.data.length === 0) {
  if (Date.now() > deadline) fail("wait for sandbox record: no lead after 30 s");
  await new Promise((resolve) => setTimeout(resolve, 200));
  const { data } = await api.GET("/v1/connections/{id}/records", {
    params: { path: { id: connection.id }, query: { object: "leads" } },
  });
  records = data ?? records;
}
const lead = records.data[0];
if (lead.object !== "leads" || !lead.fields.email) fail(`lead ${JSON.stringify(lead)}`);
console.log(`ok   sandbox record: lead ${lead.fields.email}`);

const key = step("create API key", await api.POST("/v1/api-keys", {
  body: { name: "TypeScript client", role: "member" },
}), 201);
const machine = client(key.key);
const events = step("list events (API key)", await machine.GET("/v1/events"), 200);
if (!events.data.some((e) => e.id === sent.event_id)) fail(`event ${sent.event_id} not listed`);
const deliveries = step("list deliveries (API key)", await machine.GET("/v1/deliveries", {
  params: { query: { event_id: sent.event_id } },
}), 200);
if (deliveries.data.length === 0 || deliveries.data.some((d) => d.status !== "succeeded")) {
  fail(`deliveries ${JSON.stringify(deliveries.data)}`);
}
console.log(`quickstart (typescript): event ${sent.event_id} → ${deliveries.data.length} delivery, lead in the sandbox`);
