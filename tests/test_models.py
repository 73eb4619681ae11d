"""ML models: cards, reproducible training, verified serving, fallbacks, promotion and rollback."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from decision_server import migrate
from decision_server.cli import cli
from decision_server.db import Database, utcnow
from decision_server.demo import generator
from decision_server.features import bulk
from decision_server.features.definition import FEATURE_NAMES
from decision_server.scoring import store, training
from decision_server.scoring.onnx_io import run_scores
from decision_server.scoring.serving import ModelSet
from decision_server.scoring.specs import BY_NAME, MODELS

NAMES = [spec.name for spec in MODELS]


def _demo_db(trained_models) -> Database:
    return Database(f"sqlite:///{trained_models.parent / 'demo.db'}")


def _card(folder, name):
    return store.read_card(folder, name, store.active_version(folder, name))


def test_every_model_has_a_complete_card(trained_models):
    for spec in MODELS:
        card = _card(trained_models, spec.name)
        version = card["version"]
        assert store.sha256_of(trained_models / spec.name / version / "model.onnx") == card["sha256"]
        features = card["inputs"][0]["features"]
        assert [f["name"] for f in features] == list(FEATURE_NAMES)
        assert {f["dtype"] for f in features} == {"float32"}
        assert card["outputs"] and card["label"] and card["fallback"] == spec.fallback_rule
        assert card["training"]["rows"] >= training.MIN_ROWS
        assert set(card["libraries"]) >= {"scikit-learn", "skl2onnx", "onnx", "onnxruntime"}
        assert card["agreement"]["max_difference"] <= 1e-4
        # Metrics against a naive baseline and against the fallback rule are always recorded.
        baseline = {"binary": "baseline_base_rate", "regression": "baseline_mean", "multiclass": "baseline_prior"}[spec.task]
        assert set(card["metrics"]) >= {"model", baseline, "fallback"}
        # The holdout is later than the training snapshot; shared label days are declared.
        assert card["training"]["cutoff"] < card["holdout"]["cutoff"]
        assert card["holdout"]["label_overlap_days"] == spec.horizon_days - min(spec.horizon_days, 30)


def test_the_graph_takes_float32_features_and_has_no_zipmap(trained_models):
    for spec in MODELS:
        card = _card(trained_models, spec.name)
        session = ort.InferenceSession(str(trained_models / spec.name / card["version"] / "model.onnx"))
        (only,) = session.get_inputs()
        assert (only.name, only.type, only.shape[1]) == ("features", "tensor(float)", len(FEATURE_NAMES))
        # zipmap off: probabilities are a plain float tensor, not a list of maps.
        assert all(o.type.startswith("tensor(") for o in session.get_outputs())


def test_the_models_beat_the_naive_baselines(trained_models):
    for spec in MODELS:
        m = _card(trained_models, spec.name)["metrics"]
        if spec.task == "binary":
            assert m["model"]["auc"] > 0.7 and m["model"]["brier"] < m["baseline_base_rate"]["brier"], spec.name
        elif spec.task == "regression":
            assert m["model"]["mae"] < m["baseline_mean"]["mae"], spec.name
        else:
            assert m["model"]["log_loss"] < m["baseline_prior"]["log_loss"], spec.name


def test_training_is_reproducible_from_the_seed(trained_models, tmp_path):
    again = training.train(_demo_db(trained_models), tmp_path, ["propensity", "nbo"], seed=1)
    for result in again:
        first = json.loads(
            (trained_models / result.name / store.versions(trained_models, result.name)[0] / "card.json").read_text()
        )
        assert result.card["sha256"] == first["sha256"], result.name
        assert result.card["metrics"] == first["metrics"]


def test_fresh_evaluation_on_unchanged_data_matches_the_card(trained_models):
    models = ModelSet(trained_models)
    for name in ("churn", "ltv", "nbo"):
        spec = BY_NAME[name]
        fresh = training.evaluate_current(_demo_db(trained_models), models, spec)
        card = models.statuses[name].card["metrics"]
        assert fresh["rows"] == card["rows"]
        for key, value in card["model"].items():
            assert fresh["model"][key] == pytest.approx(value, rel=1e-5), (name, key)


def test_merged_graph_scores_like_each_model_alone(trained_models):
    models = ModelSet(trained_models)
    db = _demo_db(trained_models)
    with db.connection() as conn:
        chunk = next(bulk.all_features(conn, utcnow(), chunk=300))
    batch = models.score_batch(chunk.values)
    for spec in MODELS:
        card = models.statuses[spec.name].card
        alone = ort.InferenceSession(str(trained_models / spec.name / card["version"] / "model.onnx"))
        np.testing.assert_allclose(
            batch[spec.score], run_scores(spec, alone, chunk.values, card["classes"]), rtol=1e-5, atol=1e-6
        )  # float32 sums
    # One customer at a time gives what the batch gives.
    for i in (0, 17, 299):
        one = models.score(chunk.values[i : i + 1]).values
        assert one["churn_risk"] == pytest.approx(batch["churn_risk"][i], rel=1e-6)
        assert one["nbo"]["device"] == pytest.approx(batch["nbo"][i, -1], rel=1e-6, abs=1e-9)


def _break(folder, name, how):
    version = store.active_version(folder, name)
    path = folder / name / version
    if how == "delete":
        (path / "model.onnx").unlink()
    elif how == "tamper":
        with open(path / "model.onnx", "ab") as handle:
            handle.write(b"\0")
    elif how in ("features", "stale"):
        card = json.loads((path / "card.json").read_text())
        if how == "features":
            card["inputs"][0]["features"][0]["name"] = "days_since_anything"
        else:
            card["created_at"] = (utcnow() - dt.timedelta(days=400)).isoformat()
        (path / "card.json").write_text(json.dumps(card))


@pytest.mark.parametrize(
    "how,reason",
    [
        ("delete", "model.onnx is missing"),
        ("tamper", "checksum mismatch"),
        ("features", "needs features the feature set no longer has (days_since_anything)"),
        ("stale", "stale: trained 400 days ago"),
    ],
)
def test_a_broken_model_falls_back_alone(trained_models, tmp_path, how, reason):
    folder = tmp_path / "models"
    shutil.copytree(trained_models, folder)
    _break(folder, "churn", how)
    models = ModelSet(folder, max_age_days=180)
    assert models.statuses["churn"].fallback and reason in models.statuses["churn"].reason
    assert all(not models.statuses[n].fallback for n in NAMES if n != "churn")
    x = np.zeros((1, len(FEATURE_NAMES)), dtype=np.float32)
    x[0, FEATURE_NAMES.index("recency_days")] = 90
    scores = models.score(x)
    assert scores.values["churn_risk"] == pytest.approx(0.5)  # the rule: recency_days / 180
    assert scores.models["churn"]["fallback"] is True and scores.models["propensity"]["fallback"] is False


def test_no_models_at_all_means_every_fallback(tmp_path):
    models = ModelSet(tmp_path)
    x = np.zeros((1, len(FEATURE_NAMES)), dtype=np.float32)
    scores = models.score(x)
    assert set(scores.values) == {"churn_risk", "propensity_to_buy", "ltv", "engagement_score", "nbo"}
    assert all(m["fallback"] and "missing" in m["reason"] for m in scores.models.values())
    assert sum(scores.values["nbo"].values()) == pytest.approx(1.0)


# --- over HTTP -------------------------------------------------------------------------------


@pytest.fixture
def demo(database):
    generator.load(database, generator.DemoSpec(customers=80, seed=4))


def test_scores_over_http_name_the_versions_and_a_deleted_model_falls_back(client, auth, app, models_dir, demo):
    app.extensions["models"].sync()
    response = client.get("/api/v1/customers/DEMO-000003/scores", headers=auth("channel"))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert 0 <= body["scores"]["churn_risk"] <= 1 and 0 <= body["scores"]["engagement_score"] <= 100
    assert body["scores"]["ltv"] >= 0 and sum(body["scores"]["nbo"].values()) == pytest.approx(1.0, abs=1e-5)
    for name in NAMES:
        assert body["models"][name] == {"version": store.active_version(models_dir, name), "fallback": False, "reason": None}
    assert body["features"]["frequency"] >= 0

    active = store.active_version(models_dir, "ltv")
    (models_dir / "ltv" / active / "model.onnx").unlink()
    assert app.extensions["models"].sync()
    body = client.get("/api/v1/customers/DEMO-000003/scores", headers=auth("channel")).get_json()
    assert body["models"]["ltv"]["fallback"] is True and "missing" in body["models"]["ltv"]["reason"]
    assert body["scores"]["ltv"] == pytest.approx(body["features"]["spend_12m"], rel=1e-6)
    assert body["models"]["churn"]["fallback"] is False
    ready = client.get("/ready").get_json()
    assert ready["status"] == "ready" and ready["models"]["ltv"]["fallback"] is True


def test_scores_of_an_unknown_customer_are_404(client, auth):
    response = client.get("/api/v1/customers/NOPE/scores", headers=auth("channel"))
    assert response.status_code == 404 and response.get_json()["code"] == "customer_not_found"


def test_promote_and_rollback_over_http(client, auth, app, models_dir):
    app.extensions["models"].sync()
    first, second = store.versions(models_dir, "churn")
    assert client.get("/api/v1/models/churn", headers=auth("analyst")).get_json()["version"] == second

    back = client.post("/api/v1/models/churn/rollback", json={"reason": "drift"}, headers=auth("admin"))
    assert back.status_code == 200, back.get_json()
    assert back.get_json()["version"] == first and back.get_json()["model"]["version"] == first
    detail = client.get("/api/v1/models/churn", headers=auth("analyst")).get_json()
    assert detail["version"] == first and detail["card"]["version"] == first
    assert [v["version"] for v in detail["versions"] if v["active"]] == [first]
    newest, *_, oldest = detail["history"]
    assert (newest["action"], newest["reason"], newest["actor"]) == ("rollback", "drift", "key:test-admin")
    assert (newest["version"], newest["previous"]) == (first, second)
    assert (oldest["action"], oldest["version"], oldest["previous"]) == ("promote", first, None)

    again = client.post("/api/v1/models/churn/promote", json={"version": second}, headers=auth("admin"))
    assert again.status_code == 200 and again.get_json()["previous"] == first
    listed = client.get("/api/v1/models", headers=auth("analyst")).get_json()["items"]
    assert {m["name"]: m["version"] for m in listed}["churn"] == second


@pytest.mark.parametrize(
    "path,body,status,code,field",
    [
        ("/api/v1/models/churn/promote", {"version": "20200101-000000"}, 422, "model_version_invalid", "version"),
        ("/api/v1/models/churn/promote", {"version": "../../etc"}, 422, "validation_error", "version"),
        ("/api/v1/models/churn/promote", {}, 422, "validation_error", "version"),
        ("/api/v1/models/nope/promote", {"version": "20200101-000000"}, 404, "model_not_found", "name"),
    ],
)
def test_bad_promotions_are_refused_clearly(client, auth, models_dir, path, body, status, code, field):
    response = client.post(path, json=body, headers=auth("admin"))
    assert response.status_code == status, response.get_json()
    assert response.get_json()["code"] == code and field in response.get_json()["errors"]


def test_a_tampered_version_cannot_be_promoted(client, auth, models_dir):
    first = store.versions(models_dir, "churn")[0]
    with open(models_dir / "churn" / first / "model.onnx", "ab") as handle:
        handle.write(b"x")
    response = client.post("/api/v1/models/churn/promote", json={"version": first}, headers=auth("admin"))
    assert response.status_code == 422 and "checksum mismatch" in response.get_json()["message"]


# --- CLI ---------------------------------------------------------------------------------------


def _run(trained_models, folder, *args):
    url = f"sqlite:///{trained_models.parent / 'demo.db'}"
    return CliRunner().invoke(cli, ["--database-url", url, "--models-dir", str(folder), *args])


def test_cli_list_show_evaluate_promote_rollback(trained_models, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(trained_models, folder)
    listed = _run(trained_models, folder, "models", "list")
    assert listed.exit_code == 0, listed.output
    assert all(name in listed.output for name in NAMES) and "AUC" in listed.output and "FALLBACK" not in listed.output

    shown = _run(trained_models, folder, "models", "show", "churn")
    assert shown.exit_code == 0 and "sha256" in shown.output and "(verified)" in shown.output and "recency_days" in shown.output

    evaluated = _run(trained_models, folder, "models", "evaluate", "propensity")
    assert evaluated.exit_code == 0, evaluated.output
    assert "propensity (version" in evaluated.output and "(card: auc" in evaluated.output

    first, second = store.versions(folder, "churn")
    assert f"rolled back {second} -> {first}" in _run(trained_models, folder, "models", "rollback", "churn").output
    assert f"{first} -> {second}" in _run(trained_models, folder, "models", "promote", "churn", second).output
    refused = _run(trained_models, folder, "models", "promote", "churn", "20200101-000000")
    assert refused.exit_code != 0 and "has no version" in refused.output

    (folder / "engagement" / store.active_version(folder, "engagement") / "model.onnx").unlink()
    listed = _run(trained_models, folder, "models", "list")
    assert "engagement  FALLBACK   model.onnx is missing" in listed.output and "rule: 100 ×" in listed.output


def test_cli_train_without_promotion_keeps_what_serves(trained_models, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(trained_models, folder)
    before = store.active_version(folder, "propensity")
    result = _run(trained_models, folder, "train", "propensity", "--no-promote", "--seed", "5")
    assert result.exit_code == 0, result.output
    assert "propensity: wrote propensity/" in result.output and "trained 1 of 1 model(s)" in result.output
    assert len(store.versions(folder, "propensity")) == 2 and store.active_version(folder, "propensity") == before


def test_training_on_too_short_a_history_says_what_is_missing(database, tmp_path):
    generator.load(database, generator.DemoSpec(customers=50, seed=2, months=3))
    results = training.train(database, tmp_path, ["churn", "ltv"])
    assert [r.version for r in results] == [None, None]
    assert "needs at least 301 days of purchases (180 of history, 30 between" in results[0].error
    assert "needs at least 576 days" in results[1].error
    assert not list(tmp_path.iterdir())


def test_the_same_data_trains_the_same_model_on_sqlite_and_postgresql(make_database_url, tmp_path):
    spec = generator.DemoSpec(customers=700, seed=9)
    cards = {}
    for backend in ("sqlite", "postgresql"):
        database = Database(make_database_url(backend))
        migrate.upgrade(database.engine)
        generator.load(database, spec)
        results = training.train(database, tmp_path / backend, ["churn", "nbo"], seed=3)
        assert all(r.error is None for r in results), [r.error for r in results]
        cards[backend] = {r.name: r.card for r in results}
        database.dispose()
    for name in ("churn", "nbo"):
        sqlite, postgresql = cards["sqlite"][name], cards["postgresql"][name]
        assert sqlite["sha256"] == postgresql["sha256"], name
        assert sqlite["metrics"] == postgresql["metrics"] and sqlite["training"] == postgresql["training"]


def test_a_customer_with_no_events_is_scored_as_a_newcomer(client, auth, app, models_dir):
    app.extensions["models"].sync()
    assert client.post("/api/v1/customers", json={"external_id": "FRESH"}, headers=auth("admin")).status_code == 201
    body = client.get("/api/v1/customers/FRESH/scores", headers=auth("analyst")).get_json()
    assert body["features"]["has_purchased"] == 0 and body["features"]["frequency"] == 0
    assert body["features"]["recency_days"] == body["features"]["tenure_days"] < 0.01
    assert 0 <= body["scores"]["propensity_to_buy"] <= 1 and not body["models"]["propensity"]["fallback"]


def test_a_graph_onnxruntime_cannot_run_falls_back_alone_and_the_rest_stay_merged(trained_models, tmp_path):
    import onnx

    folder = tmp_path / "models"
    shutil.copytree(trained_models, folder)
    version = store.active_version(folder, "engagement")
    path = folder / "engagement" / version / "model.onnx"
    model = onnx.load(str(path))
    model.graph.node[0].op_type = "NoSuchOperator"  # still a well-formed file, signed by a matching card
    onnx.save(model, str(path))
    card = json.loads((path.parent / "card.json").read_text())
    card["sha256"] = store.sha256_of(path)
    (path.parent / "card.json").write_text(json.dumps(card))

    models = ModelSet(folder)
    assert models.statuses["engagement"].fallback
    assert "onnxruntime cannot load it" in models.statuses["engagement"].reason
    assert models.merged and all(not models.statuses[n].fallback for n in NAMES if n != "engagement")
    assert 0 <= models.score(np.zeros((1, len(FEATURE_NAMES)), dtype=np.float32)).values["engagement_score"] <= 100


def test_a_feature_set_that_grows_or_reorders_keeps_the_models_serving(trained_models):
    db = _demo_db(trained_models)
    with db.connection() as conn:
        x = next(bulk.all_features(conn, utcnow(), chunk=200)).values
    today = ModelSet(trained_models).score_batch(x)
    # A feature added at the end (issue 5 will add stage and segment): every model still serves.
    grown = ModelSet(trained_models, feature_names=(*FEATURE_NAMES, "stage_growth"))
    assert grown.merged and not any(s.fallback for s in grown.statuses.values())
    wider = np.hstack([x, np.full((len(x), 1), 7.0, dtype=np.float32)])
    # Reordered columns: each model picks its own by name.
    order = np.random.default_rng(0).permutation(len(FEATURE_NAMES))
    shuffled = ModelSet(trained_models, feature_names=tuple(FEATURE_NAMES[i] for i in order))
    for scores in (grown.score_batch(wider), shuffled.score_batch(x[:, order])):
        for spec in MODELS:
            np.testing.assert_allclose(scores[spec.score], today[spec.score], rtol=1e-6, atol=1e-6)
