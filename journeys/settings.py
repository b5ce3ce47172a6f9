"""Settings, from the environment (and a ``.env`` file): one place for every knob."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    temporal_address: str = Field(default="localhost:7233", alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", alias="TEMPORAL_NAMESPACE")
    task_queue: str = Field(default="journeys", alias="JOURNEYS_TASK_QUEUE")
    data_dir: Path = Field(default=Path(".journeys"), alias="JOURNEYS_DATA_DIR")
    journeys_dir: Path = Field(default=Path("examples"), alias="JOURNEYS_DIR")
    database_url: str | None = Field(
        default=None, alias="JOURNEYS_DATABASE_URL",
        description="SQLAlchemy URL of the profile and outbox store; "
                    "default: SQLite in the data dir.")

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'journeys.db'}"
