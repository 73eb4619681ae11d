"""Bulk import from CSV and Parquet: bad rows reported by line, good rows loaded, re-runs idempotent."""

from __future__ import annotations

import csv
import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from decision_server.cli import cli
from decision_server.db import UTC
from decision_server.errors import ImportFileError
from decision_server.ingest import importer

CUSTOMERS = """\
external_id,first_name,last_name,email,created_at,consent_sms,consent_app,plan,region
C-1,Zoë,Ødegård-Łukasz,zoe@example.com,2024-01-15T09:00:00Z,true,no,prepaid,north
C-2,李,,,,,,postpaid,
"""

TRANSACTIONS = """\
external_id,customer_id,occurred_at,amount,cost,product,category,channel
T-1,C-1,2026-03-01T10:00:00Z,19.99,5.00,Café ☕ crème,data_bundle,app
T-2,C-1,2026-03-02T10:00:00+01:00,abc,,,,
T-3,C-1,2026-03-03T10:00:00Z,-100000000.01,,,,
T-4,C-9,2026-03-04T10:00:00Z,1.00,,,,
T-5,C-2,yesterday,1.00,,,,
T-6,C-2,2026-03-06T10:00:00Z,,,,,
T-7,C-2,2026-03-07T10:00:00Z,2.50,,bad\x00name,,
T-8,C-2,2026-03-08T10:00:00Z,0.10,,,Top-Up,
T-9,C-2,2026-03-09T10:00:00Z,1.005,,,,
T-10,C-2,2026-03-10T10:00:00Z,100.00,40.00,"Multi
line product",device,store
T-11,C-2,2026-03-11T10:00:00Z,3.00
T-12,C-2,2026-03-12T10:00:00Z,0.01,,,,web
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(database, tmp_path, kind: str, text: str, **options) -> importer.ImportReport:
    return importer.import_file(database, kind, write(tmp_path, f"{kind}.csv", text), **options)


def fetch(database, sql: str) -> list[tuple]:
    with database.connection() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(sql)]


def test_bad_rows_are_reported_by_line_and_field_while_good_rows_load(database, tmp_path):
    load(database, tmp_path, "customers", CUSTOMERS)
    report = load(database, tmp_path, "transactions", TRANSACTIONS)

    assert [(e.line, e.field) for e in report.errors] == [
        (3, "amount"),  # not a number
        (4, "amount"),  # a refund beyond the largest amount
        (5, "customer_id"),  # unknown customer
        (6, "occurred_at"),
        (7, "amount"),  # required cell left empty
        (8, "product"),  # NUL character
        (9, "category"),
        (10, "amount"),  # three decimals
        (13, "(row)"),  # too few fields; the row before spans lines 11-12
    ]
    reasons = {e.line: e.reason for e in report.errors}
    assert reasons[4] == "must be at most 100000000.00 and at least -100000000.00"
    assert reasons[5] == "no customer with this id"
    assert reasons[7] == "required"
    assert reasons[8] == "must not contain NUL characters"
    assert (report.rows_read, report.new, report.existing, report.bad_rows) == (12, 3, 0, 9)
    stored = fetch(database, "SELECT external_id, amount_cents, cost_cents, product FROM transactions ORDER BY id")
    assert stored == [
        ("T-1", 1999, 500, "Café ☕ crème"),
        ("T-10", 10000, 4000, "Multi\nline product"),
        ("T-12", 1, None, None),
    ]


def test_running_the_same_files_again_changes_nothing(database, tmp_path):
    first = [load(database, tmp_path, kind, text) for kind, text in (("customers", CUSTOMERS), ("transactions", TRANSACTIONS))]
    snapshot = [fetch(database, f"SELECT * FROM {table} ORDER BY 1") for table in ("customers", "transactions", "customer_state")]
    again = [load(database, tmp_path, kind, text) for kind, text in (("customers", CUSTOMERS), ("transactions", TRANSACTIONS))]

    assert [(r.new, r.updated, r.existing) for r in first] == [(2, 0, 0), (3, 0, 0)]
    assert [(r.new, r.updated, r.existing) for r in again] == [(0, 0, 2), (0, 0, 3)]
    assert [(e.line, e.field) for e in again[1].errors] == [(e.line, e.field) for e in first[1].errors]
    customers_again, transactions_again, _ = (
        fetch(database, f"SELECT * FROM {table} ORDER BY 1") for table in ("customers", "transactions", "customer_state")
    )
    assert (customers_again, transactions_again) == (snapshot[0], snapshot[1])  # not even updated_at moved


def test_reimported_customers_are_merged_into_the_stored_ones(database, tmp_path):
    load(database, tmp_path, "customers", CUSTOMERS)
    changed = (
        "external_id,first_name,email,consent_sms,consent_call_centre,plan,segment\n"
        "C-1,,zoe@new.example.com,false,yes,postpaid,gold\n"  # empty first name: keep the stored one
        "C-2,,,,,postpaid,\n"  # nothing new
        "C-3,Neu,,,,,\n"
    )
    report = load(database, tmp_path, "customers", changed)

    assert (report.new, report.updated, report.existing, report.errors) == (1, 1, 1, [])
    with database.session() as session:
        from decision_server.customers.service import get_customer

        c1, c2, c3 = (get_customer(session, external_id=x) for x in ("C-1", "C-2", "C-3"))
    assert (c1["first_name"], c1["last_name"], c1["email"]) == ("Zoë", "Ødegård-Łukasz", "zoe@new.example.com")
    assert c1["consent"] == {"sms": False, "app": False, "call_centre": True}
    assert c1["attributes"] == {"plan": "postpaid", "region": "north", "segment": "gold"}
    assert c1["created_at"] == dt.datetime(2024, 1, 15, 9, tzinfo=UTC)  # not in the file: kept
    assert c1["updated_at"] > c2["updated_at"]  # C-2 was not written at all
    assert c3["first_name"] == "Neu" and c3["consent"] == {} and c3["state"]["transaction_count"] == 0


def test_customer_rows_are_checked_like_the_api(database, tmp_path):
    report = load(
        database,
        tmp_path,
        "customers",
        "external_id,email,phone,consent_sms,created_at,plan\n"
        "C-1,not-an-email,+44 20 7946 0000,true,,a\n"
        "C 2,,,,,\n"
        "C-3,,call me,maybe,1960-01-01,\n"
        "C-4,first@example.com,,,,\n"
        "C-4,second@example.com,,,,\n",  # a repeated id: the first row wins
    )
    assert [(e.line, e.field) for e in report.errors] == [
        (2, "email"),
        (3, "external_id"),
        (4, "phone"),
        (4, "created_at"),
        (4, "consent_sms"),
    ]
    assert (report.new, report.existing, report.bad_rows) == (1, 1, 3)
    assert fetch(database, "SELECT external_id, email FROM customers") == [("C-4", "first@example.com")]


def test_duplicate_event_ids_in_a_file_keep_the_first_row(database, tmp_path):
    load(database, tmp_path, "customers", CUSTOMERS)
    text = (
        "external_id,customer_id,occurred_at,amount\n"
        "T-1,C-1,2026-03-01T10:00:00Z,1.00\n"
        "T-1,C-2,2026-03-01T10:00:00Z,2.00\n"
        "T-2,C-2,2026-03-01T10:00:00Z,3.00\n"
        "T-2,C-2,2026-03-01T10:00:00Z,4.00\n"
    )
    report = load(database, tmp_path, "transactions", text, batch_size=3)  # across batches too
    assert (report.new, report.existing) == (2, 2)
    assert fetch(database, "SELECT external_id, amount_cents FROM transactions ORDER BY external_id") == [
        ("T-1", 100),
        ("T-2", 300),
    ]


def test_state_rows_reflect_the_import(database, tmp_path):
    load(database, tmp_path, "customers", CUSTOMERS)
    load(database, tmp_path, "transactions", TRANSACTIONS, batch_size=2)
    state = fetch(
        database,
        "SELECT c.external_id, s.transaction_count, s.total_spend_cents, s.total_cost_cents "
        "FROM customer_state s JOIN customers c ON c.id = s.customer_id ORDER BY c.external_id",
    )
    assert state == [("C-1", 1, 1999, 500), ("C-2", 2, 10001, 4000)]


def test_touchpoints_import_with_payloads(database, tmp_path):
    load(database, tmp_path, "customers", CUSTOMERS)
    text = (
        "external_id,customer_id,occurred_at,channel,kind,payload\n"
        'P-1,C-1,2026-03-01T10:00:00Z,app,app_open,"{""screen"": ""offers""}"\n'
        "P-2,C-1,2026-03-01T10:00:00Z,app,,\n"
        'P-3,C-1,2026-03-01T10:00:00Z,app,push,"[1, 2]"\n'
        "P-4,C-1,2026-03-01T10:00:00Z,app,push,{not json\n"
        "P-5,C-2,2026-03-02T10:00:00Z,sms,sent,\n"
    )
    report = load(database, tmp_path, "touchpoints", text)
    assert [(e.line, e.field, e.reason) for e in report.errors] == [
        (3, "kind", "required"),
        (4, "payload", "must be a JSON object"),
        (5, "payload", "not valid JSON"),
    ]
    with database.session() as session:
        from decision_server.customers.service import get_customer

        assert get_customer(session, external_id="C-1")["state"]["touchpoint_count"] == 1
    with database.connection() as conn:
        payloads = conn.execute(sa.text("SELECT external_id, payload FROM touchpoints ORDER BY external_id")).all()
    assert [(x, p if isinstance(p, dict) else json.loads(p)) for x, p in payloads] == [
        ("P-1", {"screen": "offers"}),
        ("P-5", {}),
    ]


def test_parquet_rows_are_numbered_from_one(database, tmp_path):
    load(database, tmp_path, "customers", CUSTOMERS)
    path = tmp_path / "transactions.parquet"
    pq.write_table(
        pa.table(
            {
                "external_id": ["T-1", "T-2", "T-3"],
                "customer_id": ["C-1", "C-1", "C-2"],
                "occurred_at": pa.array(
                    [dt.datetime(2026, 3, 1, 10, tzinfo=UTC), dt.datetime(2026, 3, 2, 10, tzinfo=UTC), None],
                    pa.timestamp("us", tz="UTC"),
                ),
                "amount": [19.99, float("nan"), 5.0],
                "category": ["data_bundle", None, None],
            }
        ),
        path,
    )
    report = importer.import_file(database, "transactions", path)
    assert [(e.line, e.field) for e in report.errors] == [(2, "amount"), (3, "occurred_at")]
    assert fetch(database, "SELECT external_id, amount_cents, category FROM transactions") == [("T-1", 1999, "data_bundle")]


def test_parquet_customers_with_typed_columns(database, tmp_path):
    path = tmp_path / "customers.parquet"
    pq.write_table(
        pa.table(
            {
                "external_id": [1001, 1002],
                "consent_sms": [True, None],
                "score": [7.5, None],
                "since": pa.array([dt.date(2020, 5, 1), None], pa.date32()),
                "created_at": pa.array([dt.datetime(2020, 5, 1, 8), None], pa.timestamp("ms")),
            }
        ),
        path,
    )
    report = importer.import_file(database, "customers", path)
    assert (report.new, report.errors) == (2, [])
    with database.session() as session:
        from decision_server.customers.service import get_customer

        first, second = (get_customer(session, external_id=x) for x in ("1001", "1002"))
    assert first["consent"] == {"sms": True} and second["consent"] == {}
    assert first["attributes"] == {"score": "7.5", "since": "2020-05-01"} and second["attributes"] == {}
    assert first["created_at"] == dt.datetime(2020, 5, 1, 8, tzinfo=UTC)


def test_a_file_without_a_required_column_is_refused_up_front(database, tmp_path):
    load(database, tmp_path, "customers", CUSTOMERS)
    with pytest.raises(ImportFileError, match="missing required column.*occurred_at, amount"):
        load(database, tmp_path, "transactions", "external_id,customer_id,when\nT-1,C-1,2026-03-01\n")
    with pytest.raises(ImportFileError, match="format"):
        importer.import_file(database, "transactions", write(tmp_path, "t.xlsx", "x"))
    with pytest.raises(ImportFileError, match="empty"):
        load(database, tmp_path, "transactions", "")
    assert fetch(database, "SELECT count(*) FROM transactions") == [(0,)]


def test_bytes_that_are_not_utf8_fail_their_row_only(database, tmp_path):
    load(database, tmp_path, "customers", CUSTOMERS)
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        "external_id,customer_id,occurred_at,amount,product\nT-1,C-1,2026-03-01T10:00:00Z,1.00,Caf\xe9\n".encode("latin-1")
        + "T-2,C-1,2026-03-01T10:00:00Z,1.00,Café\n".encode()
    )
    report = importer.import_file(database, "transactions", path)
    assert [(e.line, e.field, e.reason) for e in report.errors] == [(2, "product", "not valid UTF-8 text")]
    assert report.new == 1


def test_imported_times_are_stored_like_the_api_stores_them(database, tmp_path, client, auth):
    headers = auth("admin")
    client.post("/api/v1/customers", json={"external_id": "C-1"}, headers=headers)
    when = "2026-03-01T12:30:00.250000+02:00"
    client.post(
        "/api/v1/transactions",
        json={"external_id": "API", "customer_id": "C-1", "occurred_at": when, "amount": "1"},
        headers=headers,
    )
    load(database, tmp_path, "transactions", f"external_id,customer_id,occurred_at,amount\nFILE,C-1,{when},1\n")
    api, imported = fetch(database, "SELECT occurred_at FROM transactions ORDER BY external_id")
    assert api == imported
    listed = client.get("/api/v1/customers/C-1/transactions", headers=headers).get_json()["items"]
    assert {item["occurred_at"] for item in listed} == {"2026-03-01T10:30:00.250000+00:00"}


def test_progress_is_reported_and_errors_can_be_written(database, tmp_path):
    load(database, tmp_path, "customers", CUSTOMERS)
    calls = []
    report = load(database, tmp_path, "transactions", TRANSACTIONS, progress=lambda *call: calls.append(call))
    size = (tmp_path / "transactions.csv").stat().st_size
    assert calls[-1] == ("transactions (bytes)", size, size)
    report.write_errors(tmp_path / "errors.csv")
    with open(tmp_path / "errors.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["line", "field", "reason"] and rows[1] == ["3", "amount", "not a number"]
    assert report.summary().startswith("transactions: 12 rows read, 3 loaded (3 new, 0 already present), 9 bad rows in ")


def test_cli_reports_bad_lines_and_exits_1(database, tmp_path):
    url = database.engine.url.render_as_string(hide_password=False)
    customers, transactions = write(tmp_path, "c.csv", CUSTOMERS), write(tmp_path, "t.csv", TRANSACTIONS)
    assert CliRunner().invoke(cli, ["--database-url", url, "import", "customers", str(customers)]).exit_code == 0

    errors = tmp_path / "errors.csv"
    result = CliRunner().invoke(
        cli, ["--database-url", url, "import", "transactions", str(transactions), "--errors", str(errors)]
    )
    assert result.exit_code == 1
    assert f"{transactions}:3: amount: not a number" in result.output
    assert f"{transactions}:5: customer_id: no customer with this id" in result.output
    assert "3 loaded (3 new, 0 already present), 9 bad rows" in result.output
    assert len(errors.read_text().splitlines()) == 10

    refused = CliRunner().invoke(cli, ["--database-url", url, "import", "transactions", str(customers)])
    assert refused.exit_code == 1
    assert (
        "Error: c.csv cannot be imported as transactions: missing required column(s) customer_id, occurred_at, amount"
        in refused.output
    )
    assert "Traceback" not in refused.output


def test_an_event_in_the_future_is_a_bad_row(database, tmp_path):
    import datetime as dt

    load(database, tmp_path, "customers", CUSTOMERS)
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = load(database, tmp_path, "transactions", f"external_id,customer_id,occurred_at,amount\nF-1,C-1,{tomorrow},1.00\n")
    assert [(e.line, e.field) for e in report.errors] == [(2, "occurred_at")]
    assert "is in the future" in report.errors[0].reason
