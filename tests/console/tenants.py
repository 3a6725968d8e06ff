"""A person in two tenants, in the browser: the header's tenant switcher.

Called from browser.py (the page signed in as the first tenant's owner, on any console page):

    from tenants import switch_tenant
    switch_tenant(page, state, base, Chain(page))

Through the API (plain HTTP from Python, not the page): a second tenant signs up, adds a sandbox
connection and invites the console user's e-mail as a `member` (no password: they join with
their own). Then, only through the console's pages: the header offers **Tenant** (a select) and
**Switch tenant**; switching lands on the second tenant's Overview, the header names it, its
role is `member`, Connections lists its connection and none of the first tenant's; axe runs on
its Overview; as a member there, Save flow in the designer is refused and no flow is made; then
the switcher brings the person back to the first tenant.

browser.py's helpers (`landed`, which runs axe through `audit`, and `screenshot`) are taken
from the running script (`__main__`): this module has no state of its own, and running
browser.py twice to import it would run the whole test twice.
"""

import json
import re
import sys
import urllib.error
import urllib.request
import uuid

from playwright.sync_api import expect


def _helper(name: str):
    """One of browser.py's helpers, from the script that is running."""
    return getattr(sys.modules["__main__"], name)


def _label(page, text: str):
    """A form control by its whole label (the header's `Tenant`, not a `Tenant name` field)."""
    return page.get_by_label(text, exact=True)


def _button(page, name: str):
    return page.get_by_role("button", name=name, exact=True)


def _api(base: str, method: str, path: str, body=None, token: str | None = None) -> tuple[int, dict]:
    """A JSON request to the API, outside the browser (no cookies)."""
    request = urllib.request.Request(f"{base}{path}", method=method)
    request.add_header("Accept", "application/json")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, data=data, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        text = err.read().decode(errors="replace")
        try:
            return err.code, json.loads(text)
        except ValueError:
            return err.code, {"detail": text[:300]}


def _require(ok, message: str):
    if not ok:
        raise AssertionError(message)
    return ok


def switch_tenant(page, state: dict, base: str, c) -> None:
    """The header's tenant switcher: into a second tenant the console user was invited to and
    back. `c` is a browser.py `Chain` (its steps print and count as browser.py's do)."""
    if not state.get("signed_in") and not c.broken:
        c.broken = "sign up"
    landed, screenshot = _helper("landed"), _helper("screenshot")
    run = uuid.uuid4().hex[:8]
    other = {"name": f"Initech Console {run}", "email": f"peter+{run}@example.com",
             "password": "correct horse battery staple", "connection": f"Initech sandbox {run}"}
    first: dict = {}

    def url_is(path: str):
        return re.compile(rf"^{re.escape(base + path.rstrip('/'))}/?([?#].*)?$")

    def current_tenant():
        return page.locator("#current-tenant")

    def invited():
        # Who is signed in, and what their first tenant holds (read with the page's session).
        me = page.request.get(f"{base}/v1/me")
        _require(me.ok, f"GET /v1/me answered {me.status}")
        me = me.json()
        first.update(id=me["tenant"]["id"], name=me["tenant"]["name"], email=me["user"]["email"])
        listed = page.request.get(f"{base}/v1/connections?limit=100")
        first["connections"] = [x["name"] for x in listed.json()["data"]] if listed.ok else []
        status, signed = _api(base, "POST", "/v1/signup", {
            "tenant_name": other["name"], "email": other["email"], "password": other["password"]})
        _require(status == 201, f"the second tenant's sign-up answered {status}: {signed}")
        other["id"], owner = signed["tenant"]["id"], signed["access_token"]
        status, made = _api(base, "POST", "/v1/connections",
                            {"name": other["connection"], "provider": "sandbox"}, owner)
        _require(status == 201, f"the second tenant's connection answered {status}: {made}")
        status, member = _api(base, "POST", "/v1/users",
                              {"email": first["email"], "role": "member"}, owner)
        _require(status == 201 and member.get("home") is False,
                 f"inviting {first['email']} answered {status}: {member}")
        print(f"   {other['name']} invited {first['email']} as a member")

    c.step("API: a second tenant invites the console user's e-mail (no password: they keep theirs)",
           invited)

    def switcher():
        page.goto(f"{base}/console/connections")
        expect(current_tenant()).to_contain_text(first["name"])
        tenant = _label(page, "Tenant")
        expect(tenant).to_have_value(first["id"])
        expect(tenant.locator("option")).to_have_count(2)
        expect(_button(page, "Switch tenant")).to_be_visible()
        landed(page, "Connections, with the tenant switcher")

    c.step("the header offers Tenant (a select of both tenants) and Switch tenant", switcher)

    def switch():
        _label(page, "Tenant").select_option(label=other["name"])
        _button(page, "Switch tenant").click()
        expect(page).to_have_url(url_is("/console/"))
        expect(current_tenant()).to_contain_text(other["name"])
        expect(_label(page, "Tenant")).to_have_value(other["id"])
        expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
        expect(page.locator(".role")).to_have_text("member")
        landed(page, "the second tenant's Overview, after Switch tenant")
        screenshot(page, "14-switched-tenant")

    c.step("Switch tenant lands on the second tenant's Overview, named in the header, as a member",
           switch)

    def data():
        page.goto(f"{base}/console/connections")
        expect(page.get_by_role("heading", name="Connections", exact=True)).to_be_visible()
        expect(page.get_by_text(other["connection"], exact=True).first).to_be_visible()
        shown = page.locator("main").inner_text()
        leaked = [n for n in first.get("connections", []) if n and n in shown]
        _require(not leaked, f"the second tenant's Connections shows the first tenant's {leaked}")
        landed(page, "the second tenant's Connections")

    c.step("the second tenant's Connections lists its connection and none of the first tenant's",
           data)

    def member_cannot_save():
        # A member designs and previews, but Save flow is refused as the API refuses it.
        page.goto(f"{base}/console/flows/new")
        _label(page, "Name").fill("A member's flow")
        page.get_by_role("checkbox", name="charge.succeeded", exact=True).check()
        # The refused POST is expected: its 403 is not a page error.
        _helper("error_documents").add(f"{base}/v1/flows")
        _button(page, "Save flow").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("role", timeout=15_000)
        expect(page).to_have_url(url_is("/console/flows/new"))
        page.goto(f"{base}/console/flows")
        expect(page.get_by_text("A member's flow")).to_have_count(0)

    c.step("as a member there, Save flow in the designer is refused and no flow is made",
           member_cannot_save)

    def back():
        _label(page, "Tenant").select_option(label=first["name"])
        _button(page, "Switch tenant").click()
        expect(page).to_have_url(url_is("/console/"))
        expect(current_tenant()).to_contain_text(first["name"])
        expect(_label(page, "Tenant")).to_have_value(first["id"])
        expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
        landed(page, "the first tenant's Overview, switched back")

    c.step("Switch tenant back: the first tenant's Overview again", back)
