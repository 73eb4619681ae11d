"""Configuration: environment variables first, explicit overrides (CLI options, tests) on top."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from decision_server.rules.source import Limits

DEFAULT_SQLITE_PATH = Path("var") / "decision-server.db"


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings for one server, CLI run or test; immutable once built."""

    database_url: str
    rules_dir: Path
    models_dir: Path
    log_level: str = "INFO"
    # Largest request body accepted; a batch of 1,000 events is well under 1 MiB.
    max_request_bytes: int = 4 * 1024 * 1024
    # How long a verified API key is trusted without reading the database again.
    key_cache_seconds: float = 10.0
    # How long a console sign-in lasts before the user signs in again (a working day).
    console_session_hours: float = 8.0
    # Real-time rules backend: durable (the durable-rules engine) or python (the compiled one).
    rules_backend: str = "durable"
    # How often each process looks at the rules folder and the database for a new revision; 0 = never.
    rules_poll_seconds: float = 2.0
    # How often each process looks at the models folder for a promoted, new or deleted model; 0 = never.
    models_poll_seconds: float = 2.0
    # A model older than this many days falls back to its rule (a stale model hurts more than it helps); 0 = no limit.
    model_max_age_days: float = 180.0
    # Margin assumed for purchases sent without a cost (historical CLV): cost = amount × (1 - margin).
    default_margin: Decimal = Decimal("0.30")
    # The channels decisions are made for and the kind of treatment each presents (sms, card, script).
    channels: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_CHANNELS))
    # How often each process looks for offer catalog changes made by other processes; 0 = never.
    catalog_poll_seconds: float = 2.0
    # Learn an adaptive propensity per offer and value segment from responses (off: model scores only).
    adaptive_learning: bool = True
    # How often each process re-reads the learning counters all processes write; 0 = never.
    learning_poll_seconds: float = 2.0
    # Enrol a customer in the loyalty program on their first purchase (off: only explicit enrolment).
    loyalty_auto_enroll: bool = True
    # Run the job scheduler in this process (one process of all holds the lease and runs jobs).
    # Off for the library and tests; `decision-server serve` turns it on unless told --no-scheduler.
    scheduler: bool = False
    # The schedules file (YAML) seeding the schedules table; default: the one shipped in decision_server/jobs.
    schedules_file: Path | None = None
    # The scheduler's lease: a leader that has not renewed it for this long is replaced.
    scheduler_lease_seconds: float = 30.0
    # A failed scheduled job is retried after this, then 4x, then 16x as long (three retries).
    job_retry_seconds: float = 60.0
    # Days of decisions kept (with their actions and responses); the decision-log-retention job removes older days. 0 = keep all.
    decision_log_retention_days: int = 90
    # A Dask scheduler (tcp://host:8786): bulk passes read and evaluate their chunks on its workers; none: two local processes.
    dask_scheduler_address: str | None = None
    # Rule files past these limits are refused before they are built (a hostile file costs a fraction of a second);
    # the shipped files are a few KiB, five levels deep, with a dozen rules or cases each.
    rules_max_file_bytes: int = 1024 * 1024
    rules_max_depth: int = 20
    rules_max_values: int = 50_000
    rules_max_total_values: int = 100_000
    rules_max_rules: int = 2_000
    rules_max_cases: int = 2_000
    rules_max_files: int = 200
    # Expensive requests (validate, publish, test or roll back rules, what-if, promote models, the passes over every
    # customer) running at once in one process; past it they get 429 with Retry-After. 0 = no limit.
    expensive_concurrency: int = 2

    # Where `serve`'s worker processes share their Prometheus metrics (emptied at start); none: a temporary directory.
    metrics_dir: Path | None = None

    @property
    def rule_limits(self) -> Limits:
        """Return the rule-file limits of these settings, for the rules engine."""
        from decision_server.rules.source import Limits

        return Limits(
            file_bytes=self.rules_max_file_bytes,
            depth=self.rules_max_depth,
            values=self.rules_max_values,
            total_values=self.rules_max_total_values,
            rules=self.rules_max_rules,
            cases=self.rules_max_cases,
            files=self.rules_max_files,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Read settings from the environment (the table `ENVIRONMENT`), then apply non-None overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "database_url": env.get("DATABASE_URL") or default_database_url(),
            "rules_dir": Path(env.get("RULES_DIR") or "rules"),
            "models_dir": Path(env.get("MODELS_DIR") or "models_onnx"),
            "log_level": env.get("LOG_LEVEL") or "INFO",
        }
        for field, (name, parse) in ENVIRONMENT.items():
            if env.get(name):
                values[field] = parse(name, env[name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["rules_dir"] = Path(values["rules_dir"]).resolve()
        values["models_dir"] = Path(values["models_dir"]).resolve()
        return cls(**values)


def _number(name: str, text: str) -> float:
    from decision_server.errors import ConfigError

    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {text!r}") from None
    if value < 0 or value != value:
        raise ConfigError(f"{name} must be 0 or more, not {text}")
    return value


def _count(name: str, text: str) -> int:
    from decision_server.errors import ConfigError

    value = _number(name, text)
    if value != int(value):
        raise ConfigError(f"{name} must be a whole number, not {text}")
    return int(value)


def _text(name: str, text: str) -> str:
    return text.strip()


DEFAULT_CHANNELS = {"app": "card", "call_centre": "script", "sms": "sms"}


def _channels(name: str, text: str) -> dict[str, str]:
    """Parse DECISION_CHANNELS, e.g. `app=card,call_centre=script,sms=sms,web=card`."""
    from decision_server.errors import ConfigError
    from decision_server.offers.treatments import KINDS
    from decision_server.validation import check_code

    channels = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, kind = part.partition("=")
        name, kind = name.strip(), kind.strip()
        if check_code(name) or kind not in KINDS:
            raise ConfigError(f"DECISION_CHANNELS: {part!r} is not channel=kind with kind one of {', '.join(KINDS)}")
        channels[name] = kind
    if not channels:
        raise ConfigError("DECISION_CHANNELS names no channel")
    return channels


def _flag(name: str, text: str) -> bool:
    from decision_server.errors import ConfigError

    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be on or off, not {text!r}")


def _margin(name: str, text: str) -> Decimal:
    from decision_server.errors import ConfigError

    try:
        margin = Decimal(text.strip())
    except InvalidOperation:
        raise ConfigError(f"DEFAULT_MARGIN must be a number between 0 and 1, not {text!r}") from None
    if not 0 <= margin <= 1:
        raise ConfigError(f"DEFAULT_MARGIN must be between 0 and 1 (0.30 = 30 %), not {text}")
    return margin


# Each optional setting: the Config field, the environment variable that sets it, and how its text is read.
ENVIRONMENT: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "key_cache_seconds": ("KEY_CACHE_SECONDS", _number),
    "console_session_hours": ("CONSOLE_SESSION_HOURS", _number),
    "rules_backend": ("RULES_BACKEND", _text),
    "rules_poll_seconds": ("RULES_POLL_SECONDS", _number),
    "models_poll_seconds": ("MODELS_POLL_SECONDS", _number),
    "model_max_age_days": ("MODEL_MAX_AGE_DAYS", _number),
    "channels": ("DECISION_CHANNELS", _channels),
    "catalog_poll_seconds": ("CATALOG_POLL_SECONDS", _number),
    "learning_poll_seconds": ("LEARNING_POLL_SECONDS", _number),
    "adaptive_learning": ("ADAPTIVE_LEARNING", _flag),
    "loyalty_auto_enroll": ("LOYALTY_AUTO_ENROLL", _flag),
    "scheduler": ("SCHEDULER", _flag),
    "schedules_file": ("SCHEDULES_FILE", lambda name, text: Path(text)),
    "scheduler_lease_seconds": ("SCHEDULER_LEASE_SECONDS", _number),
    "job_retry_seconds": ("JOB_RETRY_SECONDS", _number),
    "dask_scheduler_address": ("DASK_SCHEDULER_ADDRESS", _text),
    "decision_log_retention_days": ("DECISION_LOG_RETENTION_DAYS", _count),
    "default_margin": ("DEFAULT_MARGIN", _margin),
    "rules_max_file_bytes": ("RULES_MAX_FILE_BYTES", _count),
    "rules_max_depth": ("RULES_MAX_DEPTH", _count),
    "rules_max_values": ("RULES_MAX_VALUES", _count),
    "rules_max_total_values": ("RULES_MAX_TOTAL_VALUES", _count),
    "rules_max_rules": ("RULES_MAX_RULES", _count),
    "rules_max_cases": ("RULES_MAX_CASES", _count),
    "rules_max_files": ("RULES_MAX_FILES", _count),
    "expensive_concurrency": ("EXPENSIVE_CONCURRENCY", _count),
    "metrics_dir": ("PROMETHEUS_MULTIPROC_DIR", lambda name, text: Path(text)),  # prometheus_client's own name
}


def default_database_url() -> str:
    """Return the embedded default: a SQLite file under ./var/ of the working directory."""
    return f"sqlite:///{DEFAULT_SQLITE_PATH.resolve()}"
