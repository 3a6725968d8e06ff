"""The Reviews page (the review inbox), in the browser.

Called from browser.py (signed in as the first tenant's owner, in production):

    from reviews import reviews_page
    reviews_page(page, state, tenant_name, Chain(page))

A review item is made by the worker when a write's record is in doubt at a vendor, which the
sandbox behind the browser run cannot stage; so the worker's row is written straight into the
api's database (as incidents.py does), and everything else goes through the page: Reviews is
in the navigation, the item shows the incoming values beside each candidate with the differing
ones marked, and "Write to …" records the decision, which then shows under Decided, by the
signed-in user; axe runs on the page.
"""

import json
import sys
import uuid
from datetime import datetime, timezone

from incidents import _write
from playwright.sync_api import expect


def _helper(name: str):
    """One of browser.py's helpers, from the script that is running."""
    return getattr(sys.modules["__main__"], name)


def _seed(tenant_name: str) -> str:
    """An open review item of the tenant's production, as the worker writes one."""
    review = f"rev_{uuid.uuid4().hex}"
    now = datetime.now(timezone.utc).isoformat()
    incoming = {"match": {"email": "ana@acme.co"}, "fields": {"lastname": "Lopez", "company": "Acme"}}
    candidates = [
        {"id": "101", "email": "ana@acme.com", "lastname": "Lopez", "company": "Acme"},
        {"id": "102", "email": "ana.lopez@acme.io", "lastname": "Lopez", "company": "Acme Ltd"},
    ]
    _write(
        "INSERT INTO reviews (id, tenant_id, delivery_id, event_id, flow_id, step, connection_id, "
        "object, status, reason, summary, incoming, candidates, created_at, alert_at) "
        "SELECT ?, id, ?, ?, 'flow_console', 'contact', 'conn_console', 'contacts', 'open', "
        "'similar', ?, ?, ?, ?, ? FROM tenants WHERE name = ? AND parent_id IS NULL",
        [review, f"del_{review}", f"evt_{review}",
         "no contacts record has email ana@acme.co, but 2 contacts records have the same lastname",
         json.dumps(incoming), json.dumps(candidates), now, now, tenant_name],
    )
    return review


def reviews_page(page, state: dict, tenant_name: str, chain) -> None:
    go, landed, screenshot = _helper("go"), _helper("landed"), _helper("screenshot")
    summary = "no contacts record has email ana@acme.co"

    def listed():
        _seed(tenant_name)
        go(page, "Reviews")
        item = page.get_by_role("region", name=summary)
        expect(item).to_have_count(1)
        table = item.get_by_role("table")
        expect(table.get_by_role("columnheader", name="Candidate 101")).to_be_visible()
        email = table.get_by_role("row").filter(has_text="ana@acme.co")
        expect(email.locator("td.differs")).to_have_count(2)
        expect(email.locator("mark").first).to_have_text("ana@acme.com")
        company = table.get_by_role("row").filter(has_text="company")
        expect(company.locator("td.differs")).to_have_count(1)
        expect(company.locator("td.differs")).to_contain_text("Acme Ltd")
        landed(page, "Reviews")
        screenshot(page, "12c-reviews")

    chain.step("Reviews: an open item shows the incoming values beside its candidates, differences marked", listed)

    def picked():
        item = page.get_by_role("region", name=summary)
        item.get_by_role("button", name="Write to 101").click()
        expect(page.get_by_role("region", name=summary)).to_have_count(0)
        decided = page.get_by_role("row").filter(has_text=summary)
        expect(decided).to_contain_text("pick 101")
        expect(decided).to_contain_text("user:")

    chain.step("Reviews: Write to 101 records the decision once, by the signed-in user", picked)
