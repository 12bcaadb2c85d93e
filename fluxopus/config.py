"""Settings from the environment (FLUXOPUS_* and DATABASE_URL) or a .env file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("fluxopus", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLUXOPUS_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    # No DATABASE_URL → an embedded PostgreSQL is started in data_dir/pgdata.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "FLUXOPUS_DATABASE_URL")
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Supabase's legacy shared secret (HS256).
    jwt_secret: str | None = None
    # Asymmetric keys (ES256/RS256) published as a JWKS, e.g. https://<project>.supabase.co/auth/v1/.well-known/jwks.json
    jwks_url: str | None = None
    jwks_cache_seconds: int = Field(default=600, ge=0)
    jwt_audience: str = "authenticated"

    # Browser origins allowed to call the API (comma-separated in the env), e.g. http://localhost:5173
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Model providers for skill runs. With no key configured, runs use the offline `echo` provider.
    llm_provider: Literal["openai", "anthropic", "echo"] | None = None  # default: the first one with a key
    llm_model: str | None = None  # default model of the default provider
    openai_api_key: str | None = None
    openai_base_url: str | None = None  # any OpenAI-compatible server: Azure, Mistral, Ollama, vLLM …
    openai_model: str = "gpt-4o-mini"
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    anthropic_model: str = "claude-haiku-4-5"
    llm_timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for the provider's next bytes")
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    run_timeout: float = Field(default=600.0, gt=0, description="A run longer than this is ended as failed")
    # Knowledge embeddings: `local` runs all-MiniLM-L6-v2 (int8 ONNX) in-process, offline;
    # `openai` calls the OpenAI-compatible server configured above with dimensions=384.
    embedding_provider: Literal["local", "openai"] = "local"
    embedding_model: str = "text-embedding-3-small"
    # Run the background worker that embeds knowledge in this process (each replica may).
    indexer: bool = True

    # Monthly tokens per company (input + output) unless the company has its own budget.
    token_budget: int = Field(default=1_000_000, ge=0)

    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    # Seconds a request waits for a free connection before it is answered 503 (retry shortly).
    db_pool_timeout: float = Field(default=30.0, gt=0)
    log_level: str = "info"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _secret_long_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError("FLUXOPUS_JWT_SECRET must be at least 32 characters (HS256 needs a long secret)")
        return value

    @model_validator(mode="after")
    def _provider_has_a_key(self) -> Settings:
        if self.embedding_provider == "openai" and not self.openai_api_key:
            raise ValueError("FLUXOPUS_EMBEDDING_PROVIDER=openai needs FLUXOPUS_OPENAI_API_KEY")
        if self.llm_provider in ("openai", "anthropic") and not getattr(self, f"{self.llm_provider}_api_key"):
            name = self.llm_provider.upper()
            raise ValueError(f"FLUXOPUS_LLM_PROVIDER={self.llm_provider} needs FLUXOPUS_{name}_API_KEY")
        return self

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def dev_signing_key_path(self) -> Path:
        return self.data_dir / "jwt-signing-key.pem"

    @property
    def uses_dev_signing_key(self) -> bool:
        """Without an external secret or JWKS the service verifies tokens minted by `fluxopus token`."""
        return self.jwt_secret is None and self.jwks_url is None
