"""Settings, read once from ``BRIDGE_*`` environment variables (and ``.env``) in the entry point.

Secrets are ``SecretStr``: their ``repr`` and ``str`` print ``**********``, so a logged settings
object or a validation error never shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SYNC_URL = "https://sync.trychroma.com"
MIB = 1024 * 1024


class StoreSettings(BaseSettings):
    """The settings a command that only opens the store reads (``bridge migrate``, ``bridge jobs``):
    an operator's shell or a migration job needs the database's address, not the webhook secret."""

    model_config = SettingsConfigDict(
        env_prefix="BRIDGE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field("sqlite:///bridge.db", description="sqlite:///PATH or postgresql://...")


class Settings(StoreSettings):
    """Every setting the bridge reads; the README's settings table mirrors this class."""

    webhook_secret: SecretStr = Field(
        description="GitHub webhook secret; several, comma-separated, during a rotation"
    )
    sync_url: str = Field(DEFAULT_SYNC_URL, description="Chroma Sync API base URL")
    sync_token: SecretStr | None = Field(None, description="Chroma Cloud API key (x-chroma-token)")
    sync_timeout: float = Field(30.0, gt=0, description="seconds before a Sync call counts as timed out")
    sync_source_body: Literal["flat", "nested"] = Field(
        "flat", description="create-source body: 'flat' embedding_model (seeds) or 'nested' embedding"
    )
    routes_file: Path = Field(Path("routes.yaml"), description="YAML file of routes")
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_body_bytes: int = Field(25 * MIB, gt=0, description="largest webhook body accepted")
    debounce_seconds: float = Field(0.0, ge=0, description="wait this long after a branch's last push")
    lane_min_gap_seconds: float = Field(
        1.0, ge=0, description="after creating in a lane, wait this long before creating there again"
    )
    lane_max_gap_seconds: float = Field(
        8.0,
        ge=0,
        description="the lane's gap doubles, up to this, while each create cancels the invocation before it"
        " because Sync had not started it; at most the min gap: no backoff",
    )
    retry_base_seconds: float = Field(1.0, gt=0, description="first retry delay ceiling")
    retry_cap_seconds: float = Field(3_600.0, gt=0, description="longest delay between retries")
    retry_horizon_seconds: float = Field(3 * 86_400.0, gt=0, description="give up after this long")
    worker_concurrency: int = Field(8, ge=1, le=256, description="lanes worked on at once per process")
    worker: Literal["process", "inline", "off"] = Field(
        "process",
        description="run the worker in its own process (started by serve), in the serving process, or not",
    )
    lease_seconds: float = Field(60.0, gt=0, description="a lane claim expires this long after renewal")
    poll_interval_seconds: float = Field(1.0, gt=0, description="idle worker checks for due work this often")
    track_min_seconds: float = Field(5.0, gt=0, description="first status poll of a new invocation")
    track_max_seconds: float = Field(300.0, gt=0, description="longest gap between status polls")
    retention_days: float = Field(7.0, ge=3, description="keep delivery ids (redelivery window) this long")
    shutdown_timeout: float = Field(20.0, ge=0, description="seconds to finish in-flight work on SIGTERM")
    admin_token: SecretStr | None = Field(None, description="bearer token for admin endpoints")

    @field_validator("webhook_secret")
    @classmethod
    def _secret_not_blank(cls, value: SecretStr) -> SecretStr:
        if not [s for s in value.get_secret_value().split(",") if s.strip()]:
            raise ValueError("BRIDGE_WEBHOOK_SECRET is empty")
        return value

    @field_validator("sync_url")
    @classmethod
    def _url_has_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("BRIDGE_SYNC_URL must start with http:// or https://")
        return value.rstrip("/")

    @property
    def webhook_secrets(self) -> list[bytes]:
        """The secrets to verify against, in order; blank entries dropped."""
        raw = self.webhook_secret.get_secret_value()
        return [s.strip().encode() for s in raw.split(",") if s.strip()]

    def secret_values(self) -> list[str]:
        """Every secret string, for the log redactor."""
        values = [s.decode() for s in self.webhook_secrets]
        values += [
            s.get_secret_value()
            for s in (self.sync_token, self.admin_token)
            if s is not None and s.get_secret_value()
        ]
        return values
