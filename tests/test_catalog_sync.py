"""Catalog sync against a real local HTTP server that misbehaves on purpose: retries, garbage, retirement, all-or-nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from decision_server.cli import Context
from decision_server.config import DEFAULT_CHANNELS, Config
from decision_server.errors import Conflict, NotFound, ValidationError
from decision_server.logs import JsonFormatter
from decision_server.offers import commands, connectors, service, sync, upstream
from decision_server.offers.records import (
    CatalogConnectorRecord,
    CatalogSyncRunRecord,
    OfferRecord,
)
from decision_server.offers.schemas import OfferInSchema

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
SECRET = "Bearer s3cr3t-token-value"
MAPPING = {
    "external_id": "id",
    "code": "sku",
    "name": "title",
    "category": "kind",
    "business_value": "price.margin",
    "treatments.sms.text": "sms",
}


@dataclasses.dataclass
class Reply:
    """One scripted answer: a status, a body (JSON unless bytes or str), a delay, or a connection cut mid-body."""

    body: Any = dataclasses.field(default_factory=lambda: {"items": []})
    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0
    cut: bool = False


class Upstream:
    """A catalog API on 127.0.0.1: each path answers its replies in turn, the last one from then on."""

    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append((self.path, dict(self.headers)))
                queue = owner.replies.get(self.path) or [Reply(status=404, body={"error": "no such page"})]
                reply = queue.pop(0) if len(queue) > 1 else queue[0]
                body = (
                    reply.body
                    if isinstance(reply.body, bytes)
                    else (reply.body.encode() if isinstance(reply.body, str) else json.dumps(reply.body).encode())
                )
                time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": "application/json", **reply.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body) * (2 if reply.cut else 1)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2] if reply.cut else body)
                    if reply.cut:
                        self.close_connection = True
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting: that is the point of a slow reply

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def serve(self, path: str, *replies: Reply | list | dict) -> str:
        """Script the replies of `path` (a list or dict is one 200 JSON reply) and return its URL."""
        self.replies[path] = [r if isinstance(r, Reply) else Reply(body=r) for r in replies]
        return self.base + path


@pytest.fixture
def upstream_api():
    """A misbehaving catalog API on a free local port."""
    api = Upstream()
    thread = threading.Thread(target=api.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield api
    api.server.shutdown()
    api.server.server_close()


def item(n: int, **changes) -> dict[str, Any]:
    """An upstream item as the test catalog API sends it."""
    return {
        "id": n,
        "sku": f"ACME{n}",
        "title": f"Offer {n}",
        "kind": "upsell",
        "price": {"margin": 5 + n},
        "sms": f"Hi {{first_name}}, offer {n} is yours",
        **changes,
    }


def make_connector(database, url: str = "", **fields) -> dict[str, Any]:
    body = {"name": "acme", "url": url, "items_path": "items", "mapping": MAPPING, "timeout_seconds": 2, "retries": 2, **fields}
    with database.session(write=True) as session:
        return connectors.create(session, body)


def run(database, sleeps: list | None = None, name: str = "acme", **kwargs) -> dict[str, Any]:
    return sync.run_sync(
        database,
        name,
        channels=DEFAULT_CHANNELS,
        words=service.vocabulary(None),
        sleep=(sleeps if sleeps is not None else []).append,
        **kwargs,
    )


def offers(database) -> list[dict[str, Any]]:
    """Every offer row, in id order."""
    with database.connection() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(OfferRecord.__table__).order_by("id"))]


def by_external_id(database) -> dict[str, dict[str, Any]]:
    return {o["external_id"]: o for o in offers(database)}


def seeded(database, upstream_api, n: int = 3, **fields) -> str:
    """A connector whose first sync brought in items 1..n; return its URL."""
    url = upstream_api.serve("/offers", {"items": [item(i) for i in range(1, n + 1)]})
    make_connector(database, url, **fields)
    assert run(database, now=T0)["created"] == n
    return url


def test_a_sync_creates_the_offers_and_a_rerun_changes_nothing(database, upstream_api):
    seeded(database, upstream_api)
    first = by_external_id(database)
    assert set(first) == {"1", "2", "3"}
    assert first["1"]["code"] == "ACME1" and first["1"]["business_value"] == 6 and first["1"]["external_system"] == "acme"
    assert first["1"]["status"] == "active" and first["1"]["last_synced_at"] == T0
    assert first["1"]["treatments"] == {"sms": {"text": "Hi {first_name}, offer 1 is yours"}}

    later = T0 + dt.timedelta(hours=1)
    again = run(database, now=later)
    assert (again["status"], again["created"], again["updated"], again["unchanged"], again["attempts"]) == (
        "succeeded",
        0,
        0,
        3,
        1,
    )
    second = by_external_id(database)
    assert all(second[k]["updated_at"] == first[k]["updated_at"] and second[k]["last_synced_at"] == later for k in second)

    upstream_api.serve("/offers", {"items": [item(1), item(2, title="Offer two"), item(3)]})
    changed = run(database, now=later)
    assert (changed["created"], changed["updated"], changed["unchanged"]) == (0, 1, 2)
    assert by_external_id(database)["2"]["name"] == "Offer two"


def test_pages_are_followed_through_the_next_link(database, upstream_api):
    url = upstream_api.serve("/v2/offers", {"data": {"items": [item(1), item(2)]}, "links": {"next": "/v2/offers?page=2"}})
    upstream_api.serve(
        "/v2/offers?page=2", {"data": {"items": [item(3)]}, "links": {"next": f"{upstream_api.base}/v2/offers?page=3"}}
    )
    upstream_api.serve("/v2/offers?page=3", {"data": {"items": [item(4)]}, "links": {"next": None}})
    make_connector(database, url, items_path="data.items", next_path="links.next")
    report = run(database)
    assert (report["status"], report["created"], report["attempts"]) == ("succeeded", 4, 3)


def test_5xx_and_429_are_retried_with_growing_jittered_backoff(database, upstream_api):
    url = upstream_api.serve(
        "/offers", Reply(status=500), Reply(status=503), Reply(status=429, headers={"Retry-After": "7"}), {"items": [item(1)]}
    )
    make_connector(database, url, retries=3)
    sleeps: list[float] = []
    report = run(database, sleeps)
    assert (report["status"], report["created"], report["attempts"]) == ("succeeded", 1, 4)
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0 and sleeps[2] == 7  # Retry-After is honoured


def test_an_upstream_that_keeps_failing_writes_nothing(database, upstream_api):
    seeded(database, upstream_api)
    before = offers(database)
    upstream_api.serve("/offers", Reply(status=502))
    sleeps: list[float] = []
    report = run(database, sleeps)
    assert (report["status"], report["attempts"], len(sleeps)) == ("failed", 3, 2)
    assert "HTTP 502" in report["error"] and "3 attempts" in report["error"]
    assert offers(database) == before


def test_a_404_is_not_retried(database, upstream_api):
    make_connector(database, upstream_api.base + "/nowhere")
    sleeps: list[float] = []
    report = run(database, sleeps)
    assert (report["status"], report["attempts"], sleeps) == ("failed", 1, [])
    assert "HTTP 404" in report["error"] and "not retried" in report["error"]


def test_a_slow_upstream_times_out_and_is_retried(database, upstream_api):
    url = upstream_api.serve("/offers", Reply(delay=1.0), {"items": [item(1)]})
    make_connector(database, url, timeout_seconds=0.2, retries=1)
    report = run(database)
    assert (report["status"], report["created"], report["attempts"]) == ("succeeded", 1, 2)

    upstream_api.serve("/offers", Reply(delay=1.0))
    report = run(database)
    assert (report["status"], report["attempts"]) == ("failed", 2)
    assert "timed out after 0.2 s" in report["error"]


def test_a_connection_cut_mid_body_is_retried(database, upstream_api):
    url = upstream_api.serve("/offers", Reply(body={"items": [item(1)]}, cut=True), {"items": [item(1)]})
    make_connector(database, url)
    report = run(database)
    assert (report["status"], report["created"], report["attempts"]) == ("succeeded", 1, 2)


@pytest.mark.parametrize(
    "reply,expected",
    [
        (Reply(body="this is not json"), "page 1 is not JSON"),
        (Reply(body="<html><body>Maintenance</body></html>", headers={"Content-Type": "text/html"}), "it starts '<html>"),
        (Reply(body='{"items": [{"id": 1, "sku": "A'), "page 1 is not JSON"),
        (Reply(body=b"\xff\xfe\x00garbage"), "page 1 is not JSON"),
        (Reply(body={"items": {"id": 1}}), "`items` is an object, not a list"),
        (Reply(body={"data": []}), "page 1 has no `items`"),
        (Reply(body=[item(1)]), "page 1 has no `items`"),
        (Reply(body={"items": [item(1), "two", 3]}), "item 1 is a string, not an object"),
        (Reply(status=301, headers={"Location": "https://elsewhere.example.com/"}), "redirects are not followed"),
    ],
    ids=["text", "html", "truncated", "binary", "not-a-list", "no-items", "bare-list", "not-objects", "redirect"],
)
def test_garbage_is_refused_and_writes_nothing(database, upstream_api, reply, expected):
    seeded(database, upstream_api)
    before = offers(database)
    upstream_api.serve("/offers", reply)
    report = run(database)
    assert report["status"] == "failed" and expected in report["error"], report["error"]
    assert report["attempts"] == 1 and offers(database) == before


def test_a_failure_on_page_two_writes_nothing_from_page_one(database, upstream_api):
    url = upstream_api.serve("/offers", {"data": [item(1), item(2)]})
    make_connector(database, url, items_path="data", next_path="next")
    assert run(database)["created"] == 2
    before = offers(database)
    upstream_api.serve("/offers", {"data": [item(1, title="Changed"), item(9)], "next": "/offers/2"})
    upstream_api.serve("/offers/2", Reply(status=500))
    report = run(database)
    assert report["status"] == "failed" and report["error"].startswith("page 2: HTTP 500") and report["attempts"] == 4
    assert offers(database) == before


@pytest.mark.parametrize(
    "next_link,expected",
    [
        ("http://example.com/offers/2", "leads to another site"),
        ("/offers", "repeats an earlier page"),
        (42, "is a number, not a URL"),
    ],
)
def test_bad_next_links_are_refused(database, upstream_api, next_link, expected):
    url = upstream_api.serve("/offers", {"items": [item(1)], "next": next_link})
    make_connector(database, url, next_path="next")
    report = run(database)
    assert report["status"] == "failed" and expected in report["error"] and offers(database) == []


def test_a_catalog_over_the_size_limit_is_refused(database, upstream_api, monkeypatch):
    monkeypatch.setattr(upstream, "MAX_BYTES", 500)
    make_connector(database, upstream_api.serve("/offers", {"items": [item(i) for i in range(10)]}))
    report = run(database)
    assert report["status"] == "failed" and "bytes" in report["error"] and offers(database) == []


def test_bad_items_are_reported_with_reasons_and_good_ones_written(database, upstream_api):
    bad = [
        item(2, kind="upsel"),
        item(3, sms="x" * 161),
        {k: v for k, v in item(4).items() if k != "sku"},
        item(5),
        item(5, title="twin"),
        {"title": "no id"},
        item(6, price={"margin": "lots"}),
    ]
    make_connector(database, upstream_api.serve("/offers", {"items": [item(1), *bad, item(7)]}))
    report = run(database)
    assert (report["status"], report["created"], report["failed"]) == ("partial", 2, 7)
    reasons = {(f["external_id"], f["reason"].split(": ", 1)[1].split(":")[0]) for f in report["failures"]}
    assert reasons == {
        ("2", "category"),
        ("3", "treatments.sms.text"),
        ("4", "code"),
        ("5", "the external id appears 2 times in the catalog; none of them was written"),
        (None, "no external id (text or whole number) at `id`"),
        ("6", "business_value"),
    }
    assert set(by_external_id(database)) == {"1", "7"}


def test_a_code_taken_by_a_manual_offer_fails_that_item_only(database, upstream_api):
    with database.session(write=True) as session:
        body = OfferInSchema().load({"code": "ACME2", "name": "Mine", "category": "loyalty", "business_value": 1})
        manual = service.create(session, body, channels=DEFAULT_CHANNELS, words=service.vocabulary(None))
    make_connector(database, upstream_api.serve("/offers", {"items": [item(1), item(2), item(3)]}))
    report = run(database)
    assert (report["status"], report["created"], report["failed"]) == ("partial", 2, 1)
    assert report["failures"] == [{"external_id": "2", "reason": f"code ACME2 is taken by offer {manual['id']} (the API)"}]


def test_two_synced_offers_may_swap_their_codes(database, upstream_api):
    seeded(database, upstream_api, n=2)
    upstream_api.serve("/offers", {"items": [item(1, sku="ACME2"), item(2, sku="ACME1")]})
    report = run(database)
    assert (report["status"], report["updated"]) == ("succeeded", 2)
    assert {k: o["code"] for k, o in by_external_id(database).items()} == {"1": "ACME2", "2": "ACME1"}


def test_offers_gone_upstream_are_retired_not_deleted_and_come_back(database, upstream_api):
    seeded(database, upstream_api, n=5)
    with database.session(write=True) as session:  # tagged with the system by hand: not the upstream's to retire
        body = OfferInSchema().load(
            {"code": "MINE", "name": "Mine", "category": "loyalty", "business_value": 1, "external_system": "acme"}
        )
        service.create(session, body, channels=DEFAULT_CHANNELS, words=service.vocabulary(None))
    upstream_api.serve("/offers", {"items": [item(i) for i in range(1, 5)]})
    report = run(database)
    assert (report["status"], report["retired"], report["unchanged"]) == ("succeeded", 1, 4)
    assert by_external_id(database)["5"]["status"] == "retired"
    assert by_external_id(database)[None]["status"] == "active"

    upstream_api.serve("/offers", {"items": [item(i) for i in range(1, 6)]})
    report = run(database)
    assert (report["updated"], report["retired"]) == (1, 0)
    assert by_external_id(database)["5"]["status"] == "active"


def test_a_paused_synced_offer_stays_paused(database, upstream_api):
    seeded(database, upstream_api)
    with database.session(write=True) as session:
        service.update(
            session,
            by_external_id(database)["1"]["id"],
            {"status": "paused"},
            channels=DEFAULT_CHANNELS,
            words=service.vocabulary(None),
        )
    assert run(database)["unchanged"] == 3
    assert by_external_id(database)["1"]["status"] == "paused"


def test_an_upstream_that_suddenly_lists_nothing_retires_nothing(database, upstream_api):
    seeded(database, upstream_api, n=5, max_retire_fraction=0.5)
    before = offers(database)
    upstream_api.serve("/offers", {"items": []})
    report = run(database)
    assert report["status"] == "failed" and report["retired"] == 0
    assert "5 of the 5 live offers" in report["error"] and "max_retire_fraction 0.5" in report["error"]
    assert offers(database) == before

    # An item that fails its checks is still listed upstream: it is not retired either.
    upstream_api.serve("/offers", {"items": [item(1, kind="nope"), item(2), item(3)]})
    report = run(database)
    assert (report["status"], report["retired"], report["failed"]) == ("partial", 2, 1)


def test_a_database_failure_mid_write_leaves_the_offers_as_they_were(database, upstream_api, monkeypatch):
    seeded(database, upstream_api, max_retire_fraction=0.5)
    before = offers(database)
    upstream_api.serve("/offers", {"items": [item(1, title="Changed"), item(2), item(8)]})

    def broken(conn, ids, now):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sync, "_retire", broken)  # the last write: creates and updates are done by then
    report = run(database)
    assert report["status"] == "failed" and "failed unexpectedly (RuntimeError;" in report["error"]
    assert offers(database) == before
    with database.connection() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(CatalogSyncRunRecord.__table__)).scalar_one() == 2


def test_the_secret_is_sent_but_never_stored_returned_or_logged(database, upstream_api, monkeypatch):
    monkeypatch.setenv("ACME_TOKEN", SECRET)
    url = upstream_api.serve("/offers", {"items": [item(1)]})
    make_connector(database, url, auth_header="Authorization", auth_env="ACME_TOKEN")
    logger, lines = logging.getLogger("decision_server"), io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        good = run(database)
        upstream_api.serve("/offers", Reply(body=f"{SECRET} is not allowed here"))  # an upstream echoing our header
        bad = run(database)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert good["status"] == "succeeded" and upstream_api.requests[0][1]["Authorization"] == SECRET
    assert bad["status"] == "failed" and "***" in bad["error"]
    with database.connection() as conn:
        stored = [
            str(tuple(r)) for t in (CatalogConnectorRecord, CatalogSyncRunRecord) for r in conn.execute(sa.select(t.__table__))
        ]
    assert "catalog sync finished" in lines.getvalue()
    assert not any(SECRET in text or "s3cr3t" in text for text in (*stored, repr(good), repr(bad), lines.getvalue()))


def test_a_missing_secret_fails_the_run_before_any_request(database, upstream_api):
    make_connector(
        database, upstream_api.serve("/offers", {"items": [item(1)]}), auth_header="X-Api-Key", auth_env="NO_SUCH_VARIABLE_XYZ"
    )
    report = run(database)
    assert (report["status"], report["attempts"], upstream_api.requests) == ("failed", 0, [])
    assert "NO_SUCH_VARIABLE_XYZ" in report["error"] and "not set" in report["error"]


def test_unknown_and_disabled_connectors_are_the_callers_mistake(database, upstream_api):
    with pytest.raises(NotFound):
        run(database, name="nope")
    make_connector(database, upstream_api.base, enabled=False)
    with pytest.raises(Conflict):
        run(database)


@pytest.mark.parametrize(
    "change,field",
    [
        ({"name": "Acme"}, "name"),
        ({"url": "ftp://catalog.example.com/"}, "url"),
        ({"url": "https://user:pw@catalog.example.com/"}, "url"),
        ({"mapping": {"external_id": "id", "name": "title"}}, "mapping.code"),
        ({"mapping": {**MAPPING, "id": "id"}}, "mapping.id"),
        ({"mapping": {**MAPPING, "external_system": "src"}}, "mapping.external_system"),
        ({"mapping": {**MAPPING, "colour": "c"}}, "mapping.colour"),
        ({"mapping": {**MAPPING, "name": "a..b"}}, "mapping.name"),
        ({"items_path": "data items"}, "items_path"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": 121}, "timeout_seconds"),
        ({"retries": 11}, "retries"),
        ({"retries": 1.5}, "retries"),
        ({"max_retire_fraction": 1.5}, "max_retire_fraction"),
        ({"auth_header": "Authorization"}, "auth_env"),
        ({"auth_env": "TOKEN"}, "auth_header"),
        ({"auth_header": "Authorization", "auth_env": "Bearer abc.def"}, "auth_env"),
        ({"defaults": {"business_value": -1}}, "defaults.business_value"),
        ({"defaults": {"code": "X"}}, "defaults.code"),
        ({"schedule": "every hour"}, "schedule"),
    ],
)
def test_a_bad_connector_is_refused_naming_the_field(database, change, field):
    with pytest.raises(ValidationError) as caught:
        make_connector(database, **{"url": "https://catalog.example.com/offers", **change})
    assert field in caught.value.errors, caught.value.errors


def test_the_cli_syncs_and_exits_1_when_the_run_failed(database, upstream_api, rules_dir):
    make_connector(database, upstream_api.serve("/offers", {"items": [item(1), item(2, kind="nope")]}), retries=0)
    context = Context(
        Config.from_env(database_url=database.engine.url.render_as_string(hide_password=False), rules_dir=rules_dir)
    )
    result = CliRunner().invoke(commands.offers, ["sync", "acme"], obj=context)
    assert result.exit_code == 0, result.output
    assert "partial" in result.output and "created 1" in result.output and "2: item 1: category" in result.output
    upstream_api.serve("/offers", Reply(status=500))
    result = CliRunner().invoke(commands.offers, ["sync", "acme"], obj=context)
    assert result.exit_code == 1 and "nothing was written: page 1: HTTP 500" in result.output
    listed = CliRunner().invoke(commands.offers, ["connectors"], obj=context)
    assert listed.exit_code == 0 and "acme" in listed.output and upstream_api.base in listed.output
    context.database.dispose()


# The API (decision_server/offers/sync_routes.py, registered in app.py).
CONNECTORS = "/api/v1/catalog/connectors"


def connector_body(url: str = "https://catalog.example.com/offers", **changes) -> dict[str, Any]:
    return {"name": "acme", "url": url, "items_path": "items", "mapping": MAPPING, **changes}


def test_connectors_are_created_read_changed_and_deleted_over_the_api(client, auth):
    admin = auth("admin")
    created = client.post(CONNECTORS, json=connector_body(), headers=admin)
    assert created.status_code == 201, created.get_json()
    assert {k: created.get_json()[k] for k in ("retries", "timeout_seconds", "max_retire_fraction", "enabled")} == {
        "retries": 3,
        "timeout_seconds": 10,
        "max_retire_fraction": 0.2,
        "enabled": True,
    }
    again = client.post(CONNECTORS, json=connector_body(), headers=admin)
    assert again.status_code == 409 and again.get_json()["code"] == "connector_exists"
    assert [c["name"] for c in client.get(CONNECTORS, headers=auth("editor")).get_json()] == ["acme"]
    changed = client.patch(f"{CONNECTORS}/acme", json={"retries": 0, "defaults": {"category": "loyalty"}}, headers=admin)
    assert changed.status_code == 200 and changed.get_json()["retries"] == 0
    assert client.get(f"{CONNECTORS}/acme", headers=auth("editor")).get_json()["defaults"] == {"category": "loyalty"}
    renamed = client.patch(f"{CONNECTORS}/acme", json={"name": "other"}, headers=admin)
    assert renamed.status_code == 422 and "name" in renamed.get_json()["errors"]
    for method in ("get", "patch", "delete"):
        missing = getattr(client, method)(f"{CONNECTORS}/nope", json={"retries": 1} if method == "patch" else None, headers=admin)
        assert missing.status_code == 404 and missing.get_json()["code"] == "connector_not_found"
    assert client.post(f"{CONNECTORS}/nope/sync", headers=admin).status_code == 404
    assert client.delete(f"{CONNECTORS}/acme", headers=admin).status_code == 204
    assert client.get(f"{CONNECTORS}/acme", headers=admin).status_code == 404


@pytest.mark.parametrize(
    "change,field",
    [
        ({"name": "Bad-Name"}, "name"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"mapping": {"external_id": "id", "name": "title"}}, "mapping.code"),
        ({"mapping": {**MAPPING, "treatments.sms": "sms"}}, "mapping.treatments.sms"),
        ({"timeout_seconds": 500}, "timeout_seconds"),
        ({"retries": "3"}, "retries"),
        ({"auth_header": "Authorization"}, "auth_env"),
        ({"defaults": {"category": 5}}, "defaults.category"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_connector_is_a_422_naming_the_field(client, auth, change, field):
    response = client.post(CONNECTORS, json=connector_body(**change), headers=auth("admin"))
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"], response.get_json()


def test_a_sync_over_the_api_serves_the_new_offers_and_is_listed(client, auth, app, upstream_api, monkeypatch):
    monkeypatch.setenv("ACME_TOKEN", SECRET)
    url = upstream_api.serve("/offers", {"items": [item(1), item(2), item(3, kind="nope")]})
    body = connector_body(url, retries=0, auth_header="Authorization", auth_env="ACME_TOKEN")
    responses = [client.post(CONNECTORS, json=body, headers=auth("admin"))]
    responses.append(client.post(f"{CONNECTORS}/acme/sync", headers=auth("editor")))
    report = responses[-1].get_json()
    assert responses[-1].status_code == 200, report
    assert (report["status"], report["created"], report["failed"], report["actor"]) == ("partial", 2, 1, "key:test-editor")
    assert report["failures"][0]["external_id"] == "3" and "category" in report["failures"][0]["reason"]
    assert {o.code for o in app.extensions["catalog"].offers} >= {"ACME1", "ACME2"}  # served at once
    listed = client.get("/api/v1/offers?external_system=acme", headers=auth("channel")).get_json()
    assert sorted(o["code"] for o in listed["items"]) == ["ACME1", "ACME2"]

    upstream_api.serve("/offers", Reply(status=503))
    responses.append(client.post(f"{CONNECTORS}/acme/sync", headers=auth("admin")))
    assert responses[-1].status_code == 200 and responses[-1].get_json()["status"] == "failed"

    runs = "/api/v1/catalog/sync-runs"
    newest = client.get(f"{runs}?connector=acme&limit=1", headers=auth("analyst")).get_json()
    assert [r["status"] for r in newest["items"]] == ["failed"] and newest["next_cursor"]
    older = client.get(f"{runs}?connector=acme&limit=1&cursor={newest['next_cursor']}", headers=auth("analyst")).get_json()
    assert [r["status"] for r in older["items"]] == ["partial"] and older["next_cursor"] is None
    assert [r["id"] for r in client.get(f"{runs}?status=partial", headers=auth("channel")).get_json()["items"]] == [report["id"]]
    assert client.get(f"{runs}?connector=other", headers=auth("analyst")).get_json()["items"] == []
    for query, field in (("status=running", "status"), ("connector=Bad", "connector"), ("colour=red", "colour")):
        bad = client.get(f"{runs}?{query}", headers=auth("analyst"))
        assert bad.status_code == 422 and f"query.{field}" in bad.get_json()["errors"], bad.get_json()

    responses += [
        client.get(f"{CONNECTORS}/acme", headers=auth("admin")),
        client.get(CONNECTORS, headers=auth("admin")),
        client.get(runs, headers=auth("admin")),
    ]
    assert responses[-1].get_json()["items"][0]["error"].startswith("page 1: HTTP 503")
    assert not any("s3cr3t" in r.get_data(as_text=True) for r in responses)


def test_a_disabled_connector_does_not_sync(client, auth, upstream_api):
    body = connector_body(upstream_api.serve("/offers", {"items": [item(1)]}), enabled=False)
    assert client.post(CONNECTORS, json=body, headers=auth("admin")).status_code == 201
    refused = client.post(f"{CONNECTORS}/acme/sync", headers=auth("editor"))
    assert refused.status_code == 409 and refused.get_json()["code"] == "connector_disabled"
    assert upstream_api.requests == []
