def test_health_needs_no_key(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_reports_a_migrated_database(client):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.get_json()["checks"]["database"] == "ok"
