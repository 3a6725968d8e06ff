"""The API reference in a real browser with no way out: loads BASE/docs in Chromium, aborting
every request to another host, and checks that the page renders the whole spec from this host
alone, that "Try it out" reaches the api, and that nothing tried to leave.

    python browser.py BASE CHROMIUM

Prints one line per check and, last, `docs: N passed, N failed`; exits non-zero on a failure.
"""

import json
import sys
import urllib.request
from urllib.parse import urlsplit

from playwright.sync_api import sync_playwright

base, chromium = sys.argv[1].rstrip("/"), sys.argv[2]
here = urlsplit(base).netloc
TIMEOUT_MS = 30_000


def on_this_host(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.netloc == here


with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as reply:
    spec = json.load(reply)
methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
operations = [op for item in spec["paths"].values() for m, op in item.items() if m in methods]

results: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append((name, ok, detail))
    print(f"== {name}: {'ok' if ok else 'FAILED'}{(' — ' + detail) if detail and not ok else ''}")


requested: list[str] = []
left_the_host: list[str] = []
problems: list[str] = []

with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=chromium)
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
    page.on("request", lambda request: requested.append(request.url))
    page.on("websocket", lambda ws: requested.append(ws.url))
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))

    response = page.goto(f"{base}/docs", wait_until="load")
    check(
        "GET /docs opens the reference at /docs/, titled Tributary API",
        response is not None
        and response.ok
        and page.url == f"{base}/docs/"
        and page.title() == "Tributary API",
        f"status {response.status if response else None}, url {page.url}, title {page.title()!r}",
    )

    rendered = ""
    try:
        page.locator(".opblock").nth(len(operations) - 1).wait_for()
        page.get_by_text("Sign up", exact=True).first.wait_for()
        title = page.locator(".info .title").inner_text()
        shown = page.locator(".opblock").count()
        rendered = f"title {title!r}, {shown} operations shown, {len(operations)} in the spec"
        ok = title.startswith(spec["info"]["title"]) and shown == len(operations)
    except Exception as err:  # a timeout: the page never rendered
        ok, rendered = False, f"{rendered} {err}".strip()
    check("the reference renders the spec's title and every operation, Sign up among them", ok, rendered)

    detail = ""
    try:
        live = page.locator(".opblock", has=page.get_by_text("/healthz", exact=True))
        live.locator(".opblock-summary").click()
        live.get_by_role("button", name="Try it out").click()
        live.get_by_role("button", name="Execute").click()
        status = live.locator(".live-responses-table tr.response .response-col_status").first
        status.wait_for()
        detail = status.inner_text().strip()
        ok = detail.startswith("200")
    except Exception as err:
        ok, detail = False, f"{detail} {err}".strip()
    check("Try it out on GET /healthz reaches this host and answers 200", ok, detail)

    page.wait_for_timeout(500)  # anything the page starts late (images, fonts) is seen too
    browser.close()

check(
    "no request went to another host",
    not left_the_host and all(on_this_host(u) for u in requested),
    f"blocked {sorted(set(left_the_host))}, requested {sorted({u for u in requested if not on_this_host(u)})}",
)
check("no console error, blocked resource or script error", not problems, "; ".join(problems))

passed = sum(1 for _, ok, _ in results if ok)
failed = len(results) - passed
print(f"{len(set(requested))} distinct URLs requested, all from {here}" if not left_the_host else "")
print(f"docs: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
