"""The what-if screens over HTTP: who may start one, the CSRF guard, a draft that does not validate,
a second run while one runs, the live progress, the result's numbers (the API's numbers for the same
run) and two runs side by side."""

from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa

from decision_server.config import DEFAULT_CHANNELS
from decision_server.db import utcnow
from decision_server.demo import generator
from decision_server.jobs import reevaluation
from decision_server.jobs.records import BulkRunRecord
from decision_server.offers import service as offers_service
from decision_server.studio import drafts
from tests.test_console import csrf_of, sign_in

# The studio's screens call the studio services, which tests/test_studio_*.py run on SQLite and
# PostgreSQL; the pages themselves are the same on both, so they are tested on SQLite only.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

PAGE = "/console/rules/what-if"


@pytest.fixture
def base(database, app):
    """300 demo customers after a real pass, and the demo offers."""
    generator.load(database, generator.DemoSpec(customers=300, seed=4))
    with database.session(write=True) as session:
        offers_service.load_demo_catalog(session, channels=DEFAULT_CHANNELS, words=offers_service.vocabulary(None))
    rulebook = app.extensions["rulebook"]
    assert reevaluation.run(database, rulebook.current, app.extensions["models"].current, steps=["rfm", "stages"])["status"] == (
        "succeeded"
    )
    return database


def draft(app, key_name: str, file: str, change) -> dict:
    """Save `change(text)` of `file` as the user's draft, as the editor does; return the draft's files."""
    rulebook = app.extensions["rulebook"]
    with app.extensions["database"].session(write=True) as session:
        space = drafts.save_file(session, rulebook.current, f"key:{key_name}", file, change(rulebook.current.files[file]))
    return space.files


def raise_high(text: str, to: int = 75) -> str:
    return text.replace("value_score >= 70", f"value_score >= {to}").replace("value_score < 70", f"value_score < {to}")


def start(client, data: dict | None = None):
    form = {"csrf_token": csrf_of(client, PAGE), "steps": ["stages", "segments", "tiers", "offers"], "channels": ["app", "sms"]}
    return client.post(PAGE, data={**form, **(data or {})})


def ended(database, run_id: int) -> dict:
    deadline = time.monotonic() + 120
    while (run := reevaluation.get(database, run_id))["status"] == "running":
        assert time.monotonic() < deadline, run
        time.sleep(0.05)
    return run


def held(database) -> int:
    """A what-if running on another server (fresh lease): 10 of 300 done; return its id."""
    now = utcnow()
    with database.connection(write=True) as conn:
        return conn.execute(
            sa.insert(BulkRunRecord.__table__)
            .values(
                job="what-if",
                steps=["stages"],
                dry_run=True,
                source="console",
                started_by="key:bo",
                status="running",
                as_of=now,
                started_at=now,
                heartbeat_at=now,
                runner="other-host:7",
                done=10,
                total=300,
                resumes=0,
                rule_revision="f" * 64,
            )
            .returning(BulkRunRecord.__table__.c.id)
        ).scalar_one()


def cell(html: str, row_id: str, column: int = -1) -> str:
    """The text of one cell of the table row with id `row_id` (the last by default)."""
    row = re.search(rf'<tr id="{re.escape(row_id)}">(.*?)</tr>', html, re.S)
    assert row, f"no row {row_id}"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    return re.sub(r"<[^>]+>", "", cells[column]).strip()


def test_analysts_open_and_start_what_ifs_channel_and_ingest_keys_see_nothing(client, keys, app):
    for role in ("channel", "ingest"):
        other = app.test_client()
        sign_in(other, keys[role])
        assert other.get(PAGE).status_code == 403
        assert other.get(PAGE + "/1").status_code == 403
        assert other.post(PAGE, data={"csrf_token": csrf_of(other)}).status_code == 403
        assert 'href="/console/rules/what-if"' not in other.get("/console/customers").get_data(as_text=True)
    sign_in(client, keys["analyst"])
    home = client.get("/console/customers").get_data(as_text=True)
    assert 'href="/console/rules/what-if"' in home
    page = client.get(PAGE)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "You have no draft yet" in html and 'href="/console/rules"' in html
    assert "No what-ifs yet" in html and 'id="whatif-form"' not in html
    refused = start(client)
    assert refused.status_code == 422 and "You have no draft to try" in refused.get_data(as_text=True)


def test_a_form_without_its_token_is_refused(client, keys, app, base):
    sign_in(client, keys["analyst"])
    draft(app, "test-analyst", "value.yaml", raise_high)
    answer = client.post(PAGE, data={"steps": ["stages"]})
    assert answer.status_code == 403 and "security token" in answer.get_data(as_text=True)
    assert client.post(PAGE, data={"steps": ["stages"], "csrf_token": "forged"}).status_code == 403
    assert 'id="whatif-row-' not in client.get(PAGE).get_data(as_text=True)  # nothing started


def test_an_invalid_draft_shows_its_problems_with_file_and_line(client, keys, app, base):
    sign_in(client, keys["analyst"])
    draft(app, "test-analyst", "value.yaml", lambda t: t.replace("when: value_score >= 70", "when: valeu_score >= 70"))
    answer = start(client)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 422 and "Your draft does not validate" in html
    problem = re.search(
        r'id="whatif-problems".*?<li><a href="/console/rules/value.yaml"><code>value.yaml</code> line (\d+)', html, re.S
    )
    text = app.extensions["rulebook"].current.files["value.yaml"]
    line = text[: text.index("when: value_score >= 70")].count("\n") + 1
    assert problem and int(problem.group(1)) == line, html
    assert "valeu_score" in html
    nothing = start(client, {"steps": []})
    assert nothing.status_code == 422


def test_a_second_what_if_while_one_runs_says_so_with_a_link_to_it(client, keys, app, base):
    sign_in(client, keys["analyst"])
    draft(app, "test-analyst", "value.yaml", raise_high)
    running = held(base)
    page = client.get(PAGE).get_data(as_text=True)
    assert f'href="/console/rules/what-if/{running}"' in page and "is running now" in page
    busy = start(client)
    html = busy.get_data(as_text=True)
    assert busy.status_code == 409 and "A what-if is already running" in html
    assert re.search(rf'id="whatif-busy".*?href="/console/rules/what-if/{running}"', html, re.S)
    live = client.get(f"{PAGE}/{running}/live", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in live and 'value="10"' in live and 'max="300"' in live
    assert "Refresh" in client.get(f"{PAGE}/{running}").get_data(as_text=True)  # without JS: a link to reload
    with base.connection(write=True) as conn:
        conn.execute(sa.update(BulkRunRecord.__table__).values(status="interrupted", error="its runner stopped answering"))
    ended_live = client.get(f"{PAGE}/{running}/live", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "hx-trigger" not in ended_live and "its runner stopped answering" in ended_live  # polling stops


def test_the_result_page_shows_the_api_numbers_and_two_runs_compare(client, keys, app, auth, base):
    sign_in(client, keys["analyst"])
    draft(app, "test-analyst", "value.yaml", raise_high)
    started = start(client)
    assert started.status_code == 303, started.get_data(as_text=True)
    run_id = int(started.headers["Location"].rsplit("/", 1)[1])
    run = ended(base, run_id)
    assert run["status"] == "succeeded" and run["source"] == "console" and run["started_by"] == "key:test-analyst"
    api = client.get(f"/api/v1/jobs/runs/{run_id}", headers=auth("analyst")).get_json()["result"]
    html = client.get(f"{PAGE}/{run_id}").get_data(as_text=True)
    assert "hx-trigger" not in html
    moves = api["pass"]["moves"]["value_segment"]
    assert moves and moves[0]["from"] == "high" and moves[0]["to"] == "medium"
    with base.connection() as conn:
        direct = conn.exec_driver_sql(
            "SELECT count(*) FROM customer_state WHERE value_segment = 'high' AND value_score >= 70 AND value_score < 75"
        ).scalar()
    assert cell(html, "value-moves-high-medium") == f"{direct:,}" == f"{moves[0]['count']:,}"
    for t in api["pass"]["transitions"]:
        assert cell(html, f"stage-moves-{t['from'] or 'none'}-{t['to']}") == f"{t['count']:,}"
    for name, size in api["pass"]["after"]["segments"].items():
        assert cell(html, f"segment-sizes-{name}", 2) == f"{size:,}"
    assert re.search(rf'id="kpi-changed">.*?<div class="kpi-value">{api["pass"]["written"]:,}<', html, re.S)
    for channel in api["pass"]["offers"]["channels"]:
        name = channel["channel"]
        assert re.search(rf'id="no-offer-after-{name}">.*?kpi-value">{channel["no_eligible_offer"]["after"]:,}<', html, re.S)
        for offer in channel["offers"]:
            assert cell(html, f"offer-{name}-{offer['code']}", 1) == f"{offer['eligible_before']:,}"
            assert cell(html, f"offer-{name}-{offer['code']}", 3) == f"{offer['became_eligible']:,}"
            assert cell(html, f"offer-{name}-{offer['code']}", 4) == f"{offer['became_ineligible']:,}"
    assert 'id="value-moves-chart"' in html and '"kind": "heatmap"' in html
    listing = client.get(PAGE).get_data(as_text=True)
    assert f'id="whatif-row-{run_id}"' in listing and "your draft" in listing and "test-analyst" in listing
    assert f"{direct:,} move high → medium" in listing

    draft(app, "test-analyst", "value.yaml", lambda t: raise_high(t, 80))
    second = int(start(client, {"steps": ["stages"]}).headers["Location"].rsplit("/", 1)[1])
    assert ended(base, second)["status"] == "succeeded"
    side = client.get(f"{PAGE}/compare?a={run_id}&b={second}")
    text = side.get_data(as_text=True)
    further = client.get(f"/api/v1/jobs/runs/{second}", headers=auth("analyst")).get_json()["result"]["pass"]["moves"]
    b_count = next(m["count"] for m in further["value_segment"] if (m["from"], m["to"]) == ("high", "medium"))
    assert side.status_code == 200 and f"what-if {run_id}" in text and f"what-if {second}" in text
    row = re.search(
        r'id="compare-value-moves".*?<td>High</td><td>Medium</td><td class="num">([\d,]+)</td><td class="num">([\d,]+)</td>',
        text,
        re.S,
    )
    assert row and row.groups() == (f"{direct:,}", f"{b_count:,}")
    assert client.get(f"{PAGE}/compare").status_code == 200
    assert client.get(f"{PAGE}/compare?a=x").status_code == 422
    assert client.get(f"{PAGE}/compare?a={run_id}&b=99999").status_code == 404


def test_only_what_if_runs_have_a_page(client, keys, app, base):
    sign_in(client, keys["analyst"])
    nightly = reevaluation.run(base, app.extensions["rulebook"].current, app.extensions["models"].current, steps=["stages"])
    assert client.get(f"{PAGE}/{nightly['id']}").status_code == 404
    assert client.get(f"{PAGE}/12345").status_code == 404
