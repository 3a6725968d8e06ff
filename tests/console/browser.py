"""The web console in a real browser with no way out: drives BASE/console/ in Chromium only
through its pages, as a tenant would, aborting every request to another host and running
axe-core on every page it lands on.

    python browser.py BASE CHROMIUM SCREENSHOT_DIR LABEL

The main path: sign up → add a sandbox connection → add a Stripe account → make a flow in the
designer (connection, charge.succeeded, the example steps, Preview, Save) → send a test
charge.succeeded → see it processed and its step `contact` succeeded with a record id → make the
sandbox fail `contacts` permanently → send another → see the dead letter → clear the failure →
Retry → the delivery leaves the list and its event's step succeeds. Then: another tenant gets a
404 for the first tenant's event, a POST to /v1/flows with the session cookie and no
X-CSRF-Token is refused with 403, and signing out returns to the sign-in page.

It relies only on the console's page contract (accessible names, roles, URLs). A step of the
main path that fails stops the path (the later ones print as skipped). Prints one line per check,
the screenshot paths and, last, `console (LABEL): N passed, N failed`; exits non-zero on a failure.
"""

import json
import re
import sys
import time
import traceback
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Error as PlaywrightError
from incidents import incidents_page
from reviews import reviews_page
from tenants import switch_tenant
from playwright.sync_api import expect, sync_playwright

base, chromium, shots, run_label = sys.argv[1].rstrip("/"), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
here = urlsplit(base).netloc
shots.mkdir(parents=True, exist_ok=True)
TIMEOUT_MS = 15_000  # one action or assertion
POLL_S = 20  # how long a status may take to show (events processed, a retry)
NAV = ["Overview", "Events", "Flows", "Connections", "Stripe accounts", "Dead letters", "Alerts",
       "Incidents", "Reviews", "Audit log", "Users", "API keys", "Environments"]
PATHS = {
    "Overview": "/console/",
    "Events": "/console/events",
    "Flows": "/console/flows",
    "Connections": "/console/connections",
    "Stripe accounts": "/console/stripe-accounts",
    "Dead letters": "/console/dead-letters",
    "Alerts": "/console/alerts",
    "Incidents": "/console/incidents",
    "Reviews": "/console/reviews",
    "Audit log": "/console/audit-log",
    "Users": "/console/users",
    "API keys": "/console/api-keys",
    "Environments": "/console/environments",
}
HEADINGS = {n: n for n in PATHS if n != "Overview"}
EVENT_ID = re.compile(r"\bevt_[A-Za-z0-9_]+")
RECORD_ID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
RETRY = re.compile(r"^Retry\b")  # the row's button: `Retry`, or `Retry <step>` for a screen reader
FAILING = '{"simulate_failure": {"contacts": "permanent"}}'

run = uuid.uuid4().hex[:8]
tenant_a = {"company": f"Acme Console {run}", "email": f"ada+{run}@example.com"}
tenant_b = {"company": f"Globex Console {run}", "email": f"grace+{run}@example.com"}
password = "correct horse battery staple"
connection = "Sandbox CRM"
account = "Acme test"
flow_name = f"Charges to contacts {run}"

results: list[tuple[str, bool, str]] = []
skipped: list[str] = []
requested: list[str] = []
left_the_host: list[str] = []
problems: list[str] = []
error_documents: set[str] = set()  # documents answered 4xx/5xx on purpose (the 404 page)
last_document: dict[int, tuple[str, int]] = {}
screenshots: list[str] = []
axe = Axe()


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append((name, ok, detail))
    lines = detail.splitlines() if detail and not ok else []
    print(f"== {name}: {'ok' if ok else 'FAILED'}{(' — ' + lines[0]) if lines else ''}")
    for line in lines[1:]:
        print(f"     {line}")


def on_this_host(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.netloc == here


def short(err: BaseException) -> str:
    """A Playwright error's first lines, without its call log."""
    text = str(err).split("Call log:")[0].strip()
    return " ".join(text.split())[:600] or type(err).__name__


def texts(locator) -> list[str]:
    try:
        return [t.strip() for t in locator.all_inner_texts() if t.strip()]
    except PlaywrightError:
        return []


def alerts(page) -> list[str]:
    return texts(page.get_by_role("alert"))


def statuses(page) -> list[str]:
    return texts(page.get_by_role("status"))


def where(page) -> str:
    """What the page showed, for a failure's detail."""
    try:
        url, status = last_document.get(id(page), (page.url, 0))
        headings = texts(page.locator("h1, h2"))[:4]
        body = page.locator("body").inner_text(timeout=2_000)
        body = " ".join(body.split())[:500]
        return (
            f"page {page.url} (last document answered {status}), headings {headings}, "
            f"alerts {alerts(page)}, statuses {statuses(page)}, text: {body!r}"
        )
    except PlaywrightError as err:
        return f"page {page.url} ({short(err)})"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def screenshot(page, name: str) -> None:
    path = shots / f"{name}.png"
    try:
        page.screenshot(path=str(path), full_page=True)
        screenshots.append(str(path))
        print(f"   screenshot {path}")
    except PlaywrightError as err:
        print(f"   screenshot {path} not taken: {short(err)}")


def audit(page, what: str) -> None:
    """axe-core on the page as it is now; a serious or critical violation fails."""
    path = urlsplit(page.url).path
    response = None
    for attempt in range(2):
        try:
            page.wait_for_load_state("load")
            response = axe.run(page).response
            break
        except PlaywrightError as err:  # the page navigated while axe ran: once more
            if attempt:
                check(f"axe on {what} ({path})", False, f"axe did not run: {short(err)}")
                return
    violations = response["violations"]
    bad = [v for v in violations if v.get("impact") in ("serious", "critical")]
    lesser = [f"{v['id']} ({v.get('impact')})" for v in violations if v not in bad]
    lines = []
    for v in bad:
        targets = [", ".join(t if isinstance(t, str) else str(t) for t in n["target"]) for n in v["nodes"]]
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} — {len(targets)} node(s): {targets[:5]}")
        for n in v["nodes"][:3]:
            why = "; ".join(m["message"] for m in n.get("any", []) + n.get("all", []) + n.get("none", []))
            lines.append(f"    {' '.join(n.get('html', '').split())[:160]} — {why[:240]}")
    check(f"axe: no serious or critical violation on {what} ({path})", not bad, "\n".join(lines))
    if lesser:
        print(f"   axe, moderate or minor (not failing) on {path}: {', '.join(lesser)}")


def landed(page, what: str, again: bool = False) -> None:
    """Called once a step has landed on a page: audits it if this document is new (or again)."""
    try:
        page.wait_for_load_state("load")
        new = page.evaluate("() => window.__tributaryAudited !== true")
    except PlaywrightError:
        new = True
    if new or again:
        audit(page, what)
        try:
            page.evaluate("() => { window.__tributaryAudited = true }")
        except PlaywrightError:
            pass


def poll(page, probe, seconds: float = POLL_S, reload: bool = True):
    """probe() until it answers something truthy, reloading the page between tries."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            got = probe()
        except PlaywrightError:
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            return None
        page.wait_for_timeout(1_000)
        if reload:
            reload_page(page)


def reload_page(page) -> None:
    """Reloads, or (when the page is navigating on its own just then) waits for that instead."""
    try:
        page.reload(wait_until="load")
    except PlaywrightError:
        page.wait_for_timeout(500)
        page.wait_for_load_state("load")


def act(page, action) -> None:
    """Does `action` (a click that changes something), waits for the request it sends (anything
    but a GET) to be answered, then for the page it leads to, if the page moves on by itself."""
    try:
        page.evaluate("() => { window.__tributaryBefore = true }")
    except PlaywrightError:
        pass
    with page.expect_response(lambda r: r.request.method not in ("GET", "HEAD")):
        action()
    try:
        if page.evaluate("() => window.__tributaryBefore === true"):
            page.wait_for_event("framenavigated", predicate=lambda f: f == page.main_frame, timeout=1_500)
    except PlaywrightError:
        pass  # no navigation (the page changed in place), or one destroyed the context meanwhile
    page.wait_for_load_state("load")


class Failed(Exception):
    pass


def ensure(ok, message: str):
    if not ok:
        raise Failed(message)
    return ok


class Chain:
    """Steps that depend on each other: after one fails, the rest print as skipped."""

    def __init__(self, page):
        self.page = page
        self.broken: str | None = None

    def step(self, name: str, fn, fatal: bool = True):
        if self.broken:
            skipped.append(name)
            print(f"== {name}: skipped (after the failure of {self.broken!r})")
            return None
        try:
            value = fn()
            check(name, True)
            return value if value is not None else True
        except (Failed, PlaywrightError, AssertionError, StopIteration) as err:
            check(name, False, f"{short(err)}\n{where(self.page)}")
            screenshot(self.page, f"failed-{slug(name)}")
            if fatal:
                self.broken = name
            return None


def label(page, text: str):
    """A form control by its label, which may go on after the word (`Password (12+)`, `Email *`)."""
    return page.get_by_label(re.compile(rf"^\s*{re.escape(text)}(?![\w.])"))


def button(page, name: str):
    return page.get_by_role("button", name=name, exact=True)


def url_is(path: str):
    return re.compile(rf"^{re.escape(base + path.rstrip('/'))}/?([?#].*)?$")


def navigation(page):
    return page.get_by_role("navigation").filter(has=page.get_by_role("link", name="Overview", exact=True)).first


def go(page, name: str) -> None:
    """Follows the navigation's link to one of the main pages."""
    navigation(page).get_by_role("link", name=name, exact=True).click()
    expect(page).to_have_url(url_is(PATHS[name]))
    if name in HEADINGS:
        expect(page.get_by_role("heading", name=HEADINGS[name], exact=True).first).to_be_visible()
    landed(page, name)


def no_alert(page, doing: str) -> None:
    page.wait_for_load_state("load")
    shown = alerts(page)
    ensure(not shown, f"{doing} showed an alert: {shown}")


def row(page, *, cell: str | None = None, text: str | None = None, link: str | None = None):
    """The table row holding a cell named `cell`, a link named `link` or the text `text`."""
    rows = page.get_by_role("row")
    if cell is not None:  # a data cell or a row header (<th scope="row">)
        named = page.get_by_role("cell", name=cell, exact=True)
        rows = rows.filter(has=named.or_(page.get_by_role("rowheader", name=cell, exact=True)))
    if link is not None:
        rows = rows.filter(has=page.get_by_role("link", name=link, exact=True))
    if text is not None:
        rows = rows.filter(has_text=text)
    return rows


def new_page(browser):
    context = browser.new_context()

    def route(r):
        if on_this_host(r.request.url):
            r.continue_()
        else:
            left_the_host.append(r.request.url)
            r.abort("blockedbyclient")

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)

    def on_response(response):
        if response.request.resource_type == "document" and response.request.frame == page.main_frame:
            last_document[id(page)] = (response.url, response.status)
            if response.status >= 400:
                error_documents.add(response.url)
        # A CRM that cannot describe an object now answers 409, which the designer says on the
        # step: the unreachable HubSpot of the generated-form test does.
        if response.status == 409 and "/fields?object=" in response.url:
            error_documents.add(response.url)

    def on_console(message):
        if message.type != "error":
            return
        source = (message.location or {}).get("url", "")
        if message.text.startswith("Failed to load resource") and source in error_documents:
            return  # answered 4xx on purpose (a 404 page, a refused form, a CRM that cannot answer)
        problems.append(f"console error on {page.url}: {message.text} ({source})")

    page.on("request", lambda request: requested.append(request.url))
    page.on("websocket", lambda ws: requested.append(ws.url))
    page.on("response", on_response)
    page.on("console", on_console)
    page.on("pageerror", lambda err: problems.append(f"script error on {page.url}: {err}"))
    return context, page


def sign_up(page, tenant: dict) -> None:
    if not url_is("/console/signup").match(page.url):
        page.goto(f"{base}/console/signup")
    label(page, "Company").fill(tenant["company"])
    label(page, "Email").fill(tenant["email"])
    label(page, "Password").fill(password)
    button(page, "Create account").click()
    expect(page).to_have_url(url_is("/console/"))
    landed(page, "Overview, just signed up")
    no_alert(page, "signing up")


def send_test_event(page) -> str:
    go(page, "Stripe accounts")
    label(page, f"Event type for {account}").select_option("charge.succeeded")
    act(page, button(page, f"Send test event for {account}").click)
    said = poll(page, lambda: [t for t in statuses(page) if EVENT_ID.search(t)], seconds=TIMEOUT_MS / 1000, reload=False)
    ensure(said, f"no role=status message naming an evt_ id after sending (alerts {alerts(page)})")
    landed(page, "Stripe accounts, test event sent", again=True)
    return EVENT_ID.search(said[0]).group(0)


def open_event(page, event: str) -> str:
    """From Events, the event's page; answers its URL."""
    go(page, "Events")
    ensure(poll(page, lambda: row(page, link=event).count()), f"no row linking {event} on Events")
    row(page, link=event).first.get_by_role("link", name=event, exact=True).click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(base)}/console/events/[^/?#]+"))
    expect(page.get_by_role("heading", name=re.compile(re.escape(event))).first).to_be_visible()
    landed(page, "an event's page")
    return page.url


def step_row(page, step: str, status: str):
    """Polls the event's page until step `step` shows `status`; answers the row's text."""

    def probe():
        rows = row(page, cell=step)
        found = [t for t in texts(rows) if re.search(rf"\b{status}\b", t)]
        return found[0] if found else None

    got = poll(page, probe)
    ensure(got, f"step {step!r} never showed {status!r} in {POLL_S}s; its rows: {texts(row(page, cell=step))}")
    return got


def settings(page, value: str) -> None:
    go(page, "Connections")
    box = label(page, f"Settings for {connection}")
    box.fill(value)
    act(page, button(page, f"Save settings for {connection}").click)
    no_alert(page, f"saving settings {value}")
    reload_page(page)
    saved = "".join(label(page, f"Settings for {connection}").input_value().split())
    ensure(saved == "".join(value.split()) or (value == "{}" and saved in ("", "{}")),
           f"after saving {value} and reloading, the settings read {saved!r}")
    landed(page, "Connections, settings saved")


def main_path(page, state: dict) -> None:
    c = Chain(page)

    def entry():
        response = page.goto(f"{base}/")
        chain, request = [], response.request if response else None
        while request:
            chain.insert(0, request.url)
            request = request.redirected_from
        ensure(f"{base}/console/" in chain, f"GET / did not pass through /console/: {chain}")
        expect(page).to_have_url(url_is("/console/login"))
        landed(page, "Sign in")

    c.step("GET / redirects to /console/, which (signed out) redirects to /console/login", entry)

    def login_page():
        for name in ("Email", "Password"):
            expect(label(page, name)).to_be_visible()
        expect(button(page, "Sign in")).to_be_visible()
        screenshot(page, "00-sign-in")
        page.get_by_role("link", name="Create an account", exact=True).click()
        expect(page).to_have_url(url_is("/console/signup"))
        landed(page, "Sign up")

    c.step("the sign-in page has Email, Password, Sign in, and Create an account → /console/signup", login_page)

    def signup():
        sign_up(page, tenant_a)
        state["signed_in"] = True

    c.step("sign up (Company, Email, Password, Create account) lands on the Overview at /console/", signup)

    def nav():
        n = navigation(page)
        for name in NAV:
            expect(n.get_by_role("link", name=name, exact=True)).to_be_visible()
        expect(button(page, "Sign out")).to_be_visible()

    c.step(f"the Overview has a navigation with {', '.join(NAV)} and a Sign out button", nav)

    def add_connection():
        go(page, "Connections")
        label(page, "Name").fill(connection)
        act(page, button(page, "Add connection").click)
        expect(row(page, text=connection).first).to_be_visible()
        no_alert(page, "adding a connection")
        expect(label(page, f"Settings for {connection}")).to_be_visible()
        expect(button(page, f"Save settings for {connection}")).to_be_visible()
        landed(page, "Connections, one added")
        print(f"   connection row: {texts(row(page, text=connection))}")
        screenshot(page, "05-connections")

    c.step(f"Connections: add the sandbox connection {connection!r}; its row, settings and save button show", add_connection)

    def add_account():
        go(page, "Stripe accounts")
        label(page, "Name").fill(account)
        label(page, "Signing secret").fill("whsec_console_test_secret")
        act(page, button(page, "Add Stripe account").click)
        expect(label(page, f"Event type for {account}")).to_be_visible()
        expect(button(page, f"Send test event for {account}")).to_be_visible()
        no_alert(page, "adding a Stripe account")
        shown = page.locator("body").inner_text()
        url = re.search(rf"{re.escape(base)}/\S+", shown)
        ensure(url, f"the page shows no webhook URL under {base}/")
        print(f"   webhook URL: {url.group(0)}")
        landed(page, "Stripe accounts, one added")

    c.step(f"Stripe accounts: add {account!r}; a webhook URL, its event type select and send button show", add_account)

    def designer():
        go(page, "Flows")
        page.get_by_role("link", name="New flow", exact=True).click()
        expect(page).to_have_url(url_is("/console/flows/new"))
        landed(page, "the flow designer")
        label(page, "Name").fill(flow_name)
        select = label(page, "Connection")
        value = select.locator("option", has_text=connection).first.get_attribute("value")
        select.select_option(value=value)
        steps = label(page, "Steps").input_value()
        ensure("contacts" in steps and "billing_details.email" in steps,
               f"Steps (JSON) is not the example upsert of contacts by billing_details.email: {steps[:300]!r}")

    c.step("Flows → New flow: the designer opens; name it, pick the connection; Steps holds the example", designer)

    def search():
        before = page.get_by_role("checkbox").count()
        label(page, "Search event types").fill("charge.succ")
        target = page.get_by_role("checkbox", name="charge.succeeded", exact=True)
        expect(target).to_be_visible()
        after = poll(page, lambda: (n := page.get_by_role("checkbox").count()) < before and n, seconds=5, reload=False)
        ensure(after, f"typing in Search event types left {page.get_by_role('checkbox').count()} of {before} checkboxes")
        print(f"   Search event types: {before} checkboxes → {after}")

    c.step("the designer: Search event types narrows the checkboxes to charge.succeeded", search, fatal=False)

    def tick():
        target = page.get_by_role("checkbox", name="charge.succeeded", exact=True)
        target.check()
        expect(target).to_be_checked()

    c.step("the designer: tick charge.succeeded", tick)

    def mapping():
        button(page, "Load sample event").click()
        expect(page.locator("#sample-status")).to_contain_text("Fields of a charge.succeeded event")
        expect(button(page, "object.amount")).to_be_visible()
        # A new row in the fields table of step contact, renamed to amount_paid: its value is
        # suggested from the sample's amount, and accepted with one click.
        button(page, "Add fields field to contact").click()
        name = page.get_by_label("Fields field 3 of contact", exact=True)
        name.fill("amount_paid")
        name.press("Tab")
        use = page.get_by_role("button", name=re.compile(r"^Use \{\{ object\.amount \| major_units\(object\.currency\) \}\} for amount_paid$"))
        expect(use).to_be_visible()
        use.click()
        # The value of `name` picked from the sample's fields.
        page.get_by_label("Value of name in contact", exact=True).focus()
        button(page, "object.billing_details.name").click()
        steps = json.loads(label(page, "Steps (JSON)").input_value())
        fields = steps[0]["fields"]
        ensure(fields.get("amount_paid") == "{{ object.amount | major_units(object.currency) }}", f"fields: {fields}")
        ensure(fields.get("name") == "{{ object.billing_details.name }}", f"fields: {fields}")

    c.step("the designer: a sample event's fields, a suggestion accepted, the JSON kept in sync", mapping)

    def preview():
        before = statuses(page)
        button(page, "Preview").click()
        shown = poll(page, lambda: alerts(page) or (statuses(page) != before and statuses(page)), seconds=TIMEOUT_MS / 1000, reload=False)
        ensure(not alerts(page), f"Preview showed an alert: {alerts(page)}")
        ensure(shown, f"Preview showed nothing in role=status (before: {before})")
        print(f"   preview: {' | '.join(statuses(page))[:300]!r}")
        landed(page, "the flow designer, previewed", again=True)
        screenshot(page, "04-flow-designer")

    c.step("the designer: Preview answers in role=status, with no alert", preview)

    def operations():
        shown = " | ".join(statuses(page))
        ensure("contacts" in shown, f"the preview does not show the rendered upsert of contacts: {shown!r}")

    c.step("the designer: the preview shows the rendered operations (the upsert of contacts)", operations, fatal=False)

    def kept():
        lost = []
        if label(page, "Name").input_value() != flow_name:
            lost.append(f"Name reads {label(page, 'Name').input_value()!r}")
        select = label(page, "Connection")
        picked = select.locator("option:checked").all_inner_texts()
        if not any(connection in p for p in picked):
            lost.append(f"Connection reads {picked}")
        box = page.get_by_role("checkbox", name="charge.succeeded", exact=True)
        if not box.count() or not box.is_checked():
            lost.append("charge.succeeded is not ticked")
        if lost:  # carry on with the main path: fill it in again
            label(page, "Name").fill(flow_name)
            select.select_option(value=select.locator("option", has_text=connection).first.get_attribute("value"))
            label(page, "Search event types").fill("charge.succeeded")
            page.get_by_role("checkbox", name="charge.succeeded", exact=True).check()
        ensure(not lost, "Preview lost what was entered: " + "; ".join(lost))

    c.step("the designer keeps Name, Connection and the ticked event type across Preview", kept, fatal=False)

    def save():
        act(page, button(page, "Save flow").click)
        expect(page).to_have_url(url_is("/console/flows"))
        no_alert(page, "saving the flow")
        expect(page.get_by_text(flow_name).first).to_be_visible()
        landed(page, "Flows, one saved")

    c.step("the designer: Save flow goes to /console/flows, which lists the new flow", save)

    def first_event():
        state["event"] = send_test_event(page)
        print(f"   sent {state['event']}")
        screenshot(page, "06-stripe-accounts")

    c.step("Stripe accounts: Send test event (charge.succeeded) says it was sent, with its evt_ id", first_event)

    def processed():
        event = state["event"]
        go(page, "Events")
        got = poll(page, lambda: [t for t in texts(row(page, link=event)) if re.search(r"\bprocessed\b", t)])
        ensure(got, f"the row of {event} never showed processed in {POLL_S}s: {texts(row(page, link=event))}")
        landed(page, "Events")
        screenshot(page, "02-events")

    c.step("Events: the test event's row shows processed (polled)", processed)

    def event_page():
        state["event_url"] = open_event(page, state["event"])
        text = step_row(page, "contact", "succeeded")
        ensure(RECORD_ID.search(text), f"step contact's row shows no record id: {text!r}")
        for name in ("Replay", "Force replay"):
            expect(button(page, name)).to_be_visible()
        print(f"   step row: {text!r}")
        screenshot(page, "03-event")

    c.step("the event's page: heading names it; step contact succeeded with a record id; Replay, Force replay", event_page)

    c.step(f"Connections: save the settings {FAILING}", lambda: settings(page, FAILING))

    def second_event():
        state["event2"] = send_test_event(page)
        print(f"   sent {state['event2']}")

    c.step("Stripe accounts: send another test charge.succeeded", second_event)

    def dead_letter():
        go(page, "Dead letters")
        got = poll(page, lambda: texts(row(page, cell="contact")))
        ensure(got, f"no row for step contact on Dead letters within {POLL_S}s")
        ensure(any(re.search(r"simulated|permanent", t, re.I) for t in got), f"the dead letter's row shows no error: {got}")
        expect(row(page, cell="contact").first.get_by_role("button", name=RETRY)).to_be_visible()
        print(f"   dead letter: {got[0]!r}")
        landed(page, "Dead letters")
        screenshot(page, "07-dead-letters")

    c.step("Dead letters: the delivery of step contact is listed, with its error and a Retry button", dead_letter)

    def dead_step():
        open_event(page, state["event2"])
        step_row(page, "contact", "dead")

    c.step("the second event's page shows step contact dead", dead_step, fatal=False)

    c.step("Connections: save the settings {} (the failure cleared)", lambda: settings(page, "{}"))

    def retry():
        go(page, "Dead letters")
        before = row(page, cell="contact").count()
        ensure(before, "the dead letter is no longer listed before Retry")
        act(page, row(page, cell="contact").first.get_by_role("button", name=RETRY).click)
        no_alert(page, "Retry")
        gone = poll(page, lambda: row(page, cell="contact").count() < before)
        ensure(gone, f"the dead letter was still listed {POLL_S}s after Retry: {texts(row(page, cell='contact'))}")
        landed(page, "Dead letters, after Retry")

    c.step("Dead letters: Retry; the delivery leaves the list", retry, fatal=False)

    def retried():
        open_event(page, state["event2"])
        print(f"   step row: {step_row(page, 'contact', 'succeeded')!r}")

    c.step("the second event's page then shows step contact succeeded", retried)

    def overview():
        go(page, "Overview")
        screenshot(page, "01-overview")

    c.step("the Overview, with the tenant's data, renders", overview)
    state["main_ok"] = not c.broken


def bulk_retry(page, state: dict) -> None:
    """Dead letters narrowed to one flow and retried all at once, with the job's progress; Events
    narrowed by date."""
    c = Chain(page)
    if not state.get("main_ok"):
        c.broken = "the main path"

    c.step(f"Connections: save the settings {FAILING} again", lambda: settings(page, FAILING))

    def two_dead():
        state["bulk"] = [send_test_event(page), send_test_event(page)]
        go(page, "Dead letters")
        got = poll(page, lambda: row(page, cell="contact").count() >= 2)
        ensure(got, f"two dead letters of step contact did not show within {POLL_S}s")

    c.step("two more test events: their step contact goes dead", two_dead)
    c.step("Connections: save the settings {} (the failure cleared) again", lambda: settings(page, "{}"))

    def retry_all():
        go(page, "Dead letters")
        label(page, "Flow").select_option(label=flow_name)
        button(page, "Filter").click()
        expect(page).to_have_url(re.compile(r"/console/dead-letters\?flow_id=[^&]+$"))
        expect(row(page, cell="contact")).to_have_count(2)
        landed(page, "Dead letters of one flow")
        act(page, button(page, "Retry all of this flow").click)
        said = poll(page, lambda: [t for t in statuses(page) if "Retry all ended" in t], seconds=POLL_S, reload=False)
        ensure(said, f"no outcome of Retry all in role=status within {POLL_S}s (alerts {alerts(page)})")
        ensure("2 retried" in said[0] and "of 2" in said[0], f"the outcome: {said[0]!r}")
        print(f"   {said[0]}")
        gone = poll(page, lambda: row(page, cell="contact").count() == 0)
        ensure(gone, f"dead letters still listed after Retry all: {texts(row(page, cell='contact'))}")
        for event in state["bulk"]:
            open_event(page, event)
            step_row(page, "contact", "succeeded")

    c.step("Dead letters: filtered by the flow, Retry all of this flow follows the job and empties the list", retry_all)

    def dates():
        go(page, "Events")
        today = time.strftime("%Y-%m-%d", time.gmtime())
        tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86_400))
        label(page, "From").fill(today)
        button(page, "Filter").click()
        expect(row(page, link=state["bulk"][0])).to_have_count(1)
        label(page, "From").fill(tomorrow)
        button(page, "Filter").click()
        expect(row(page, link=state["bulk"][0])).to_have_count(0)
        expect(label(page, "From")).to_have_value(tomorrow)
        no_alert(page, "filtering Events by date")

    c.step("Events: From today lists the new events, From tomorrow none", dates)


def administration(page, state: dict) -> None:
    """Users, API keys, alerts and the audit log, as the owner."""
    c = Chain(page)
    if not state.get("signed_in"):
        c.broken = "sign up"
    invited = f"lin+{run}@example.com"

    def keys():
        go(page, "API keys")
        label(page, "Key name").fill("CI script")
        button(page, "Create key").click()
        expect(page.get_by_role("status")).to_contain_text("shown once")
        shown = " ".join(statuses(page))
        key = shown.split(": ")[-1].strip()
        ensure(key.startswith("trb_"), f"the key is shown once: {shown!r}")
        screenshot(page, "09-api-keys")
        reload_page(page)
        expect(row(page, cell="CI script")).to_have_count(1)
        ensure(key not in page.content(), "the key is not shown again")

    c.step("API keys: Create key shows the key once; the list names it and never shows it again", keys)

    def users():
        go(page, "Users")
        label(page, "Email").fill(invited)
        label(page, "First password").fill(password)
        page.get_by_label("Role", exact=True).select_option("member")
        button(page, "Invite user").click()
        expect(row(page, cell=invited)).to_have_count(1)
        page.get_by_label(f"Role of {invited}").select_option("admin")
        button(page, f"Save role of {invited}").click()
        expect(page.get_by_label(f"Role of {invited}")).to_have_value("admin")
        no_alert(page, "changing a role")
        screenshot(page, "10-users")

    c.step("Users: invite a member, then make them an admin", users)

    def alerts_page():
        go(page, "Alerts")
        expect(label(page, "Channel URL")).to_be_visible()
        screenshot(page, "11-alerts")

    c.step("Alerts: the notification channels page renders with its form", alerts_page)

    def any_connection():
        go(page, "Connections")
        page.get_by_role("link", name="Add a connection of any kind", exact=True).click()
        page.get_by_label("Provider", exact=True).select_option("hubspot")
        button(page, "Show the form").click()
        page.get_by_label("Credentials type", exact=True).select_option("token")
        button(page, "Show the form").click()
        expect(page.get_by_role("heading", name="A hubspot connection with token credentials")).to_be_visible()
        landed(page, "the generated connection form")
        label(page, "Connection name").fill("HubSpot private app")
        page.get_by_label("token", exact=True).fill("pat-na1-00000000-0000-0000-0000-000000000000")
        button(page, "Add hubspot connection").click()
        expect(page).to_have_url(url_is("/console/connections"))
        expect(row(page, cell="HubSpot private app")).to_have_count(1)

    c.step("Connections: a HubSpot private-app connection through the form generated for it", any_connection)

    def audit_page():
        go(page, "Audit log")
        expect(page.get_by_role("rowheader", name="user.create").first).to_be_visible()
        screenshot(page, "12-audit-log")

    c.step("Audit log: the invitation is listed", audit_page)


def flow_history(page, state: dict) -> None:
    """Edit the flow in the designer, see the difference between versions, roll back."""
    c = Chain(page)
    if not state.get("signed_in"):
        c.broken = "sign up"
    renamed = flow_name + " (renamed)"

    def edit():
        go(page, "Flows")
        page.get_by_role("link", name=flow_name, exact=True).click()
        expect(page.get_by_role("heading", name=flow_name, exact=True)).to_be_visible()
        page.get_by_role("link", name="Edit flow", exact=True).click()
        expect(label(page, "Name")).to_have_value(flow_name)
        expect(page.get_by_role("checkbox", name="charge.succeeded", exact=True)).to_be_checked()
        label(page, "Name").fill(renamed)
        button(page, "Save flow").click()
        expect(page.get_by_role("heading", name=renamed, exact=True)).to_be_visible()
        landed(page, "the flow's page")

    c.step("Flows: open the flow, Edit flow keeps what it had, Save makes version 2", edit)

    def compare():
        page.get_by_label("From version").select_option("1")
        page.get_by_label("To version").select_option("2")
        button(page, "Compare").click()
        expect(page.get_by_role("table").filter(has_text="Version 1 → version 2")).to_be_visible()
        expect(page.locator("tr.removed").filter(has_text=flow_name).first).to_be_visible()
        expect(page.locator("tr.added").filter(has_text=renamed).first).to_be_visible()
        screenshot(page, "08-flow-history")

    c.step("the flow's history: Compare shows version 1 → 2, the name removed and added", compare)

    def rollback():
        button(page, "Roll back to version 1").click()
        expect(page.get_by_role("heading", name=flow_name, exact=True)).to_be_visible()
        expect(page.get_by_role("rowheader", name="3 (current)")).to_be_visible()
        no_alert(page, "rolling back")

    c.step("Roll back to version 1 saves it as version 3", rollback)


def designer_tools(page, state: dict) -> None:
    """The designer's other tools: a recipe to start from, what each event type means, a
    suggestion from the recipes, steps of other kinds, problems shown next to their field, the
    live preview after every change, and the YAML view kept in step both ways."""
    c = Chain(page)
    if not state.get("signed_in"):
        c.broken = "sign up"
    live = page.locator("#live-preview")

    def recipe():
        go(page, "Flows")
        page.get_by_role("link", name="New flow", exact=True).click()
        label(page, "Start from").select_option("sandbox-lead-from-checkout")
        button(page, "Use this start").click()
        expect(page).to_have_url(re.compile(r"/console/flows/new\?recipe=sandbox-lead-from-checkout$"))
        box = page.get_by_role("checkbox", name="checkout.session.completed", exact=True)
        expect(box).to_be_checked()
        expect(box).to_have_accessible_description("A customer finished a Stripe Checkout page.")
        steps = json.loads(label(page, "Steps (JSON)").input_value())
        ensure(steps and steps[0]["id"] == "lead" and steps[0]["object"] == "leads", f"steps: {steps}")
        expect(page.get_by_text("Recipe “Stripe Checkout to sandbox CRM leads”", exact=False)).to_be_visible()
        label(page, "Name").fill(flow_name + " from a recipe")

    c.step("the designer: Start from a recipe fills the trigger and steps; each event type says what it means", recipe)

    def previewed():
        expect(live).to_contain_text("it would send", timeout=TIMEOUT_MS)
        expect(live.locator("ol.operations li").first).to_contain_text("lead: upsert leads")
        landed(page, "the designer from a recipe, previewed live")

    c.step("the designer: the live preview shows what the recipe would send, with no button pressed", previewed)

    def from_recipes():
        button(page, "Load sample event").click()
        expect(page.locator("#sample-status")).to_contain_text("Fields of a checkout.session.completed event")
        button(page, "Add fields field to lead").click()
        rows = page.get_by_role("table", name="Fields of lead").get_by_role("row")
        name = page.get_by_label(f"Fields field {rows.count() - 1} of lead", exact=True)
        name.fill("Invoiced_Value")
        name.press("Tab")
        use = page.get_by_role("button", name="Use {{ object.amount_total | major_units(object.currency) }} for Invoiced_Value", exact=True)
        expect(use).to_be_visible()
        ensure("recipe" in (use.get_attribute("title") or ""), f"the suggestion's reason: {use.get_attribute('title')!r}")
        use.click()
        fields = json.loads(label(page, "Steps (JSON)").input_value())[0]["fields"]
        ensure(fields.get("Invoiced_Value") == "{{ object.amount_total | major_units(object.currency) }}", f"fields: {fields}")

    c.step("the designer: a field a recipe maps is suggested as the recipe maps it, with that reason", from_recipes)

    def other_kind():
        label(page, "Kind of the new step").select_option("email")
        button(page, "Add step").click()
        expect(page.get_by_role("group", name=re.compile(r"^Step 2: step2 — Email"))).to_be_visible()
        expect(page.get_by_role("table", name="Fields of step2")).to_be_visible()
        expect(label(page, "Own connection of step2")).to_be_visible()
        # Its problems are shown next to what they concern, and the preview says so.
        problem = page.locator(".inline-error").filter(has_text="steps[1].fields.to")
        expect(problem).to_be_visible(timeout=TIMEOUT_MS)
        expect(page.get_by_role("table", name="Fields of step2")).to_have_accessible_description(re.compile(r"steps\[1\]\.fields\.to"))
        expect(live).to_contain_text("problem(s)")
        screenshot(page, "05-designer-problems")
        # Made an assert instead: it takes a condition and a message, and the problems go.
        label(page, "Action of step2").select_option("assert")
        label(page, "Must be true of step2").fill("object.amount_total > 0")
        label(page, "Message of step2").fill("nothing was paid")
        expect(page.locator(".inline-error")).to_have_count(0, timeout=TIMEOUT_MS)
        expect(live).to_contain_text("it would send", timeout=TIMEOUT_MS)
        steps = json.loads(label(page, "Steps (JSON)").input_value())
        ensure(steps[1] == {"id": "step2", "action": "assert", "check": "object.amount_total > 0", "message": "nothing was paid"},
               f"the assert step: {steps[1]}")
        landed(page, "the designer with an assert step", again=True)

    c.step("the designer: an email step's problems show by its fields; made an assert, it validates", other_kind)

    def yaml_view():
        before = json.loads(label(page, "Steps (JSON)").input_value())
        page.get_by_text("The flow as YAML", exact=True).click()
        text = label(page, "Flow (YAML)").input_value()
        ensure("action: assert" in text and 'check: "object.amount_total > 0"' in text, f"the YAML: {text[:600]!r}")
        label(page, "Flow (YAML)").fill(text.replace("nothing was paid", "no payment"))
        label(page, "Flow (YAML)").press("Shift+Tab")
        expect(label(page, "Message of step2")).to_have_value("no payment", timeout=TIMEOUT_MS)
        after = json.loads(label(page, "Steps (JSON)").input_value())
        before[1]["message"] = "no payment"
        ensure(after == before, f"the steps read back from the YAML differ from the editor's:\n{after}\n{before}")
        no_alert(page, "editing the YAML")
        landed(page, "the designer's YAML view", again=True)

    c.step("the designer: the YAML view holds the flow; edited, the API reads it and the editor follows", yaml_view)


def environments(page, state: dict) -> None:
    """An environment added, switched to in the header (its own connections: only its sandbox
    CRM, none of production's), and back to production."""
    c = Chain(page)
    if not state.get("signed_in"):
        c.broken = "sign up"

    def add():
        go(page, "Environments")
        label(page, "Environment name").fill("staging")
        act(page, button(page, "Add environment").click)
        expect(row(page, cell="staging")).to_have_count(1)
        expect(button(page, "Delete staging")).to_be_visible()
        landed(page, "Environments, staging added", again=True)
        screenshot(page, "13-environments")

    c.step("Environments: Add environment staging; it is listed with a Delete button", add)

    def modes():
        expect(row(page, cell="staging")).to_contain_text("test mode only")
        expect(row(page, text="production")).to_contain_text("live mode only")
        act(page, button(page, "Allow both modes in staging").click)
        expect(row(page, cell="staging")).to_contain_text("live and test mode", timeout=TIMEOUT_MS)
        act(page, button(page, "Test mode only in staging").click)
        expect(row(page, cell="staging")).to_contain_text("test mode only", timeout=TIMEOUT_MS)
        no_alert(page, "changing staging's Stripe modes")

    c.step("Environments: staging takes test-mode accounts only; both modes allowed, then test only again", modes)

    def switch():
        page.get_by_label("Environment", exact=True).select_option("staging")
        act(page, button(page, "Switch environment").click)
        expect(page).to_have_url(url_is("/console/"))
        go(page, "Connections")
        expect(page.get_by_text("Sandbox CRM").first).to_be_visible()
        expect(page.get_by_text("HubSpot private app")).to_have_count(0)
        go(page, "Flows")
        expect(page.get_by_text(flow_name)).to_have_count(0)
        no_alert(page, "acting in staging")

    c.step("the header's Environment switcher: in staging, Connections has its sandbox CRM and not production's HubSpot, Flows none of production's", switch)

    def back():
        page.get_by_label("Environment", exact=True).select_option("production")
        act(page, button(page, "Switch environment").click)
        go(page, "Flows")
        expect(page.get_by_text(flow_name).first).to_be_visible()

    c.step("switched back to production, its flow is there again", back)


def live_events(page, state: dict) -> None:
    """The Events list keeps itself current: an event sent meanwhile appears with no reload."""
    c = Chain(page)
    if not state.get("signed_in"):
        c.broken = "sign up"

    def live():
        go(page, "Events")
        expect(page.get_by_label("Update the list as events arrive")).to_be_checked()
        token = next(k["value"] for k in page.context.cookies(base) if k["name"] == "tributary_csrf")
        accounts = page.request.get(f"{base}/v1/stripe-accounts").json()["data"]
        sent = page.request.post(
            f"{base}/v1/stripe-accounts/{accounts[0]['id']}/test-events",
            data={"type": "customer.created"},
            headers={"X-CSRF-Token": token},
        )
        ensure(sent.status == 202, f"the test event answered {sent.status}: {sent.text()[:300]}")
        event = sent.json()["stripe_event_id"]
        expect(page.get_by_role("link", name=event, exact=True)).to_be_visible(timeout=20000)

    c.step("Events updates itself: an event sent meanwhile appears without a reload", live)


def csrf(page, state: dict) -> None:
    name = "POST /v1/flows with the session cookie and no X-CSRF-Token is refused with 403"
    if not state.get("signed_in"):
        skipped.append(name)
        print(f"== {name}: skipped (never signed in)")
        return
    cookies = page.context.cookies(base)
    reply = page.request.post(
        f"{base}/v1/flows",
        data={"name": "csrf probe", "connection_id": "none", "event_types": ["charge.succeeded"], "steps": []},
    )
    said = f"cookies {[c['name'] for c in cookies]}, answered {reply.status}: {' '.join(reply.text().split())[:300]!r}"
    check(name, bool(cookies) and reply.status == 403, said)
    print(f"   {said}")


def isolation(browser, state: dict) -> None:
    name = "another tenant gets a 404 page for the first tenant's event URL"
    if not state.get("event_url"):
        skipped.append(name)
        print(f"== {name}: skipped (no event page of the first tenant)")
        return
    context, other = new_page(browser)
    c = Chain(other)
    try:
        c.step("a second browser context signs up another tenant", lambda: sign_up(other, tenant_b))

        def not_found():
            response = other.goto(state["event_url"])
            status = response.status if response else None
            ensure(status == 404, f"{state['event_url']} answered {status}")
            landed(other, "the 404 page")

        c.step(name, not_found)

        def events():
            go(other, "Events")
            ensure(not other.get_by_text(state["event"]).count(), f"the other tenant's Events lists {state['event']}")

        c.step("the other tenant's Events does not list the first tenant's event", events)
    finally:
        context.close()


def sign_out(page, state: dict) -> None:
    c = Chain(page)
    if not state.get("signed_in"):
        c.broken = "sign up"

    def out():
        button(page, "Sign out").click()
        expect(page).to_have_url(url_is("/console/login"))
        expect(button(page, "Sign in")).to_be_visible()
        page.goto(f"{base}/console/")
        expect(page).to_have_url(url_is("/console/login"))

    c.step("Sign out returns to the sign-in page, and /console/ then redirects there", out)

    def back_in():
        label(page, "Email").fill(tenant_a["email"])
        label(page, "Password").fill(password)
        button(page, "Sign in").click()
        expect(page).to_have_url(url_is("/console/"))
        no_alert(page, "signing in")
        expect(navigation(page).get_by_role("link", name="Events", exact=True)).to_be_visible()
        landed(page, "Overview, signed in again")

    c.step("Sign in (Email, Password) lands on the Overview again", back_in)


state: dict = {}
try:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        context, page = new_page(browser)
        main_path(page, state)
        bulk_retry(page, state)
        administration(page, state)
        incidents_page(page, state, tenant_a["company"], Chain(page))
        reviews_page(page, state, tenant_a["company"], Chain(page))
        flow_history(page, state)
        designer_tools(page, state)
        environments(page, state)
        live_events(page, state)
        csrf(page, state)
        isolation(browser, state)
        switch_tenant(page, state, base, Chain(page))
        sign_out(page, state)
        page.wait_for_timeout(500)  # anything the page starts late (images, fonts) is seen too
        browser.close()
except Exception as err:  # the harness itself broke: say where, and count it
    traceback.print_exc()
    check("the browser test ran to its end", False, short(err))

check(
    "no request went to another host",
    not left_the_host and all(on_this_host(u) for u in requested),
    f"blocked {sorted(set(left_the_host))}, requested {sorted({u for u in requested if not on_this_host(u)})}",
)
check("no console error, blocked resource or script error", not problems, "\n".join(problems))

passed = sum(1 for _, ok, _ in results if ok)
failed = len(results) - passed
print(f"{len(set(requested))} distinct URLs requested, all from {here}" if not left_the_host else "")
if screenshots:
    print(f"screenshots in {shots}: {', '.join(Path(p).name for p in screenshots)}")
if skipped:
    print(f"{len(skipped)} step(s) skipped after a failure")
print(f"console ({run_label}): {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
