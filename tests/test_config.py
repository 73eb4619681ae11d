"""Configuration from the environment with overrides, and database URL handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from decision_server.config import Config
from decision_server.db import normalize_url
from decision_server.errors import ConfigError


def test_defaults_are_the_embedded_setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Config.from_env({})
    assert config.database_url == f"sqlite:///{tmp_path / 'var' / 'decision-server.db'}"
    assert config.rules_dir == tmp_path / "rules"
    assert config.models_dir == tmp_path / "models_onnx"


def test_environment_then_overrides(tmp_path):
    env = {"DATABASE_URL": "postgresql://u@h:5432/db", "RULES_DIR": str(tmp_path / "r"), "MODELS_DIR": "/m"}
    config = Config.from_env(env, rules_dir=tmp_path / "other", models_dir=None)
    assert config.database_url == "postgresql://u@h:5432/db"
    assert config.rules_dir == tmp_path / "other"
    assert config.models_dir == Path("/m")


def test_plain_postgresql_url_uses_psycopg3():
    assert normalize_url("postgresql://postgres@127.0.0.1:5432/test").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://postgres@127.0.0.1/test").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


@pytest.mark.parametrize("url", ["mysql://root@localhost/db", "not a url", "sqlite+aiosqlite:///x.db"])
def test_unsupported_urls_are_refused_clearly(url):
    with pytest.raises(ConfigError) as error:
        normalize_url(url)
    assert "DATABASE_URL" in error.value.message or "SQLite" in error.value.message


def test_importing_the_package_does_nothing(tmp_path):
    import subprocess
    import sys

    code = "import decision_server, sys; print(sorted(m for m in sys.modules if m.startswith(('flask', 'sqlalchemy'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.strip() == "[]"
    assert not (tmp_path / "var").exists()


def test_the_cli_and_the_server_start_without_the_training_stack(tmp_path):
    import subprocess
    import sys

    # scikit-learn and skl2onnx take seconds to import; only `train` needs them, every CLI call and server paid for them.
    code = (
        "import sys, decision_server.cli, decision_server.app as a, decision_server.scoring.serving; a._blueprints(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'skl2onnx', 'pandas', 'scipy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.strip() == "[]"


def test_default_margin_is_read_and_checked():
    from decimal import Decimal

    import pytest

    from decision_server.config import Config
    from decision_server.errors import ConfigError

    assert Config.from_env({"DEFAULT_MARGIN": "0.25"}).default_margin == Decimal("0.25")
    assert Config.from_env({}).default_margin == Decimal("0.30")
    for bad in ("1.5", "-0.1", "thirty"):
        with pytest.raises(ConfigError, match="DEFAULT_MARGIN"):
            Config.from_env({"DEFAULT_MARGIN": bad})


def test_every_setting_in_the_table_is_read_and_bad_text_is_refused_by_name():
    from decision_server.config import ENVIRONMENT

    config = Config.from_env({"KEY_CACHE_SECONDS": "3", "SCHEDULER": "on", "DECISION_CHANNELS": "web=card"})
    assert (config.key_cache_seconds, config.scheduler, dict(config.channels)) == (3.0, True, {"web": "card"})
    fields = {f.name for f in __import__("dataclasses").fields(Config)}
    assert set(ENVIRONMENT) <= fields
    for bad in ("soon", "-1"):
        with pytest.raises(ConfigError, match="RULES_POLL_SECONDS"):
            Config.from_env({"RULES_POLL_SECONDS": bad})
