"""The Incidents page, in the browser.

Called from browser.py (signed in as the first tenant's owner, in production):

    from incidents import incidents_page
    incidents_page(page, state, tenant_name, Chain(page))

An incident needs weeks of history before a detector may open one, which a browser test cannot
wait for; so the anomaly watcher's row is written straight into the api's database
(CONSOLE_DATABASE_URL: `sqlite:PATH` or a Postgres URL, set by run.sh), as the watcher writes
it. Everything else goes through the console's pages: Incidents is in the navigation, lists the
open incident with its summary, detector and evidence, links to what to look at, and its
Acknowledge button marks it seen by the signed-in user; axe runs on the page.
"""

import os
import sqlite3
import subprocess
import sys
import uuid
from datetime import datetime, timezone

from playwright.sync_api import expect


def _helper(name: str):
    """One of browser.py's helpers, from the script that is running."""
    return getattr(sys.modules["__main__"], name)


def _write(sql: str, values: list[str]) -> None:
    """Runs one statement on the api's database."""
    url = os.environ["CONSOLE_DATABASE_URL"]
    if url.startswith("sqlite:"):
        with sqlite3.connect(url.removeprefix("sqlite:")) as db:
            db.execute(sql, values)
        return
    # psql with variables, so no value is pasted into the SQL.
    args = ["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", url]
    for i, value in enumerate(values):
        args += ["-v", f"v{i}={value}"]
    numbered = sql
    for i in range(len(values)):
        numbered = numbered.replace("?", f":'v{i}'", 1)
    subprocess.run(args, input=numbered, text=True, check=True, capture_output=True)


def _seed(tenant_name: str) -> str:
    """An open silence incident of the tenant's production, as the watcher writes it."""
    incident = f"inc_{uuid.uuid4().hex}"
    now = datetime.now(timezone.utc).isoformat()
    evidence = ('{"expected": 41.5, "observed": 0.0, "p_value": 1e-18, '
                '"window": {"from": "%s", "to": "%s"}, '
                '"look_at": "/v1/events?type=charge.succeeded"}' % (now, now))
    _write(
        "INSERT INTO incidents (id, tenant_id, detector, series, status, summary, evidence, "
        "opened_at, updated_at) SELECT ?, id, 'silence', ?, 'open', ?, ?, ?, ? "
        "FROM tenants WHERE name = ? AND parent_id IS NULL",
        [incident, "events|stripe|acct_console|charge.succeeded",
         "No charge.succeeded from stripe acct_console for 61 minutes; about 41 were expected in that time.",
         evidence, now, now, tenant_name],
    )
    return incident


def incidents_page(page, state: dict, tenant_name: str, chain) -> None:
    go, landed, screenshot = _helper("go"), _helper("landed"), _helper("screenshot")
    summary = "No charge.succeeded from stripe acct_console for 61 minutes"

    def listed():
        _seed(tenant_name)
        go(page, "Incidents")
        row = page.get_by_role("row").filter(has_text=summary)
        expect(row).to_have_count(1)
        expect(row).to_contain_text("silence")
        expect(row).to_contain_text("41.5")
        link = row.get_by_role("link")
        expect(link).to_contain_text("Look at it")
        expect(link).to_have_attribute("href", "/console/events?type=charge.succeeded")
        landed(page, "Incidents")
        screenshot(page, "12b-incidents")

    chain.step("Incidents: an open incident is listed with its evidence and where to look", listed)

    def acknowledged():
        row = page.get_by_role("row").filter(has_text=summary)
        row.get_by_role("button", name="Acknowledge").click()
        expect(row).to_contain_text("user:")
        expect(row.get_by_role("button")).to_have_count(0)

    chain.step("Incidents: Acknowledge marks it seen by the signed-in user", acknowledged)
