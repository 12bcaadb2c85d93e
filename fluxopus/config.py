"""Settings from the environment (FLUXOPUS_* and DATABASE_URL) or a .env file."""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import platformdirs
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from dotenv import dotenv_values
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# The `iss` of tokens the server signs itself (/auth/v1, `fluxopus token`) when FLUXOPUS_PUBLIC_URL is
# not set: a constant, so the CLI and a server on any host or port agree on it.
BUILT_IN_ISSUER = "fluxopus"
KEY_HELP = "a 32-byte key, base64-encoded; make one with: openssl rand -base64 32"


def parse_key(text: str) -> bytes:
    """A key as people paste it: standard or URL-safe base64, padding optional."""
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            key = decode(padded.encode())
        except (binascii.Error, ValueError):
            continue
        if len(key) == 32:
            return key
    raise ValueError(f"an encryption key must be {KEY_HELP}")


SIGNING_KEY_HELP = (
    "an EC P-256 private key in PEM; make one with: "
    "openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt"
)


def pem_text(text: str) -> bytes:
    """A PEM as people put it in an env file: on one line with `\\n` escapes, maybe quoted (Docker's
    --env-file keeps quotes)."""
    cleaned = text.strip()
    if len(cleaned) >= 2 and cleaned[0] == cleaned[-1] and cleaned[0] in "\"'":
        cleaned = cleaned[1:-1].strip()
    return cleaned.replace("\\r", "").replace("\\n", "\n").encode()


def parse_signing_key(text: str) -> ec.EllipticCurvePrivateKey:
    """The built-in sign-in's ES256 key from PEM text (PKCS#8 or SEC1), or a ValueError saying what is wrong."""
    try:
        key = serialization.load_pem_private_key(pem_text(text), password=None)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        raise ValueError(f"the signing key is encrypted; it must be {SIGNING_KEY_HELP}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"the signing key is not a readable PEM private key; it must be {SIGNING_KEY_HELP}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        kind = f"EC {key.curve.name}" if isinstance(key, ec.EllipticCurvePrivateKey) else type(key).__name__
        kind = kind.removeprefix("_").removesuffix("PrivateKey")
        raise ValueError(
            f"the signing key is of type {kind}, but tokens are signed ES256: it must be {SIGNING_KEY_HELP}"
        )
    return key


def parse_verification_keys(text: str) -> list[ec.EllipticCurvePublicKey]:
    """Keys rotated out, whose tokens are still accepted: PEM blocks one after the other, each a
    public key or the old private key itself (only its public half is kept)."""
    keys = []
    for match in _PEM_BLOCK.finditer(pem_text(text)):
        if match[1] != b"PUBLIC KEY":
            keys.append(parse_signing_key(match[0].decode()).public_key())
            continue
        try:
            public = serialization.load_pem_public_key(match[0])
        except (ValueError, UnsupportedAlgorithm):
            raise ValueError("a previous signing key is not a readable PEM public key") from None
        if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP256R1):
            raise ValueError("a previous signing key is not an EC P-256 public key")
        keys.append(public)
    if not keys and text.strip():
        raise ValueError("no PEM block (-----BEGIN PUBLIC KEY----- …) in the previous signing keys")
    return keys


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----", re.DOTALL)


def browser_origin(text: object) -> object:
    """An origin as browsers send it in `Origin` (scheme and host in lower case, no default port, no
    slash), or `*`: CORS compares the strings, so `https://App.example.com/` would never match."""
    if not isinstance(text, str) or text.strip() == "*":
        return text.strip() if isinstance(text, str) else text
    parts = urlsplit(text.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        not parts.scheme
        or not parts.hostname
        or port == -1
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ValueError(
            f"FLUXOPUS_CORS_ORIGINS: {text!r} is not an origin; give scheme://host[:port] without a path, "
            "e.g. http://localhost:5173, comma-separated, or *"
        )
    scheme = parts.scheme.lower()
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default_port = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default_port else "")


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("fluxopus", appauthor=False))


def _words(value: object) -> object:
    """Scopes and key lists come from the env as one string: split on commas and spaces."""
    if isinstance(value, str):
        return [w for w in re.split(r"[\s,]+", value) if w]
    return value


class OAuthProviderSettings(BaseModel):
    """One OAuth provider's settings: FLUXOPUS_OAUTH_<NAME>_<FIELD>, e.g. FLUXOPUS_OAUTH_GOOGLE_CLIENT_ID.

    Built-in providers need only the client id and secret; the other fields override their
    definition (GitHub Enterprise, an Entra ID tenant, narrower scopes). Any other name declares a
    generic provider: an OpenID Connect `discovery_url`, or `authorize_url` and `token_url`."""

    model_config = ConfigDict(extra="forbid")

    client_id: str | None = None
    client_secret: SecretStr | None = None
    scopes: Annotated[list[str] | None, NoDecode] = None
    authorize_url: str | None = None
    token_url: str | None = None
    userinfo_url: str | None = None
    revoke_url: str | None = None
    discovery_url: str | None = None
    tenant: str | None = None  # Microsoft Entra ID: common, organizations, or a tenant id
    api_url: str | None = None  # where skill tools call the provider's API (GitHub Enterprise: …/api/v3)
    title: str | None = None
    pkce: bool | None = None

    _split_scopes = field_validator("scopes", mode="before")(_words)


_OAUTH_ENV = re.compile(
    r"^FLUXOPUS_OAUTH_(?P<name>[A-Z0-9_]+?)_(?P<field>"
    + "|".join(f.upper() for f in OAuthProviderSettings.model_fields)
    + r")$"
)


class OAuthEnvironment(PydanticBaseSettingsSource):
    """Collects FLUXOPUS_OAUTH_<NAME>_<FIELD> from the environment and .env into `oauth`: the
    provider names are not known in advance, so no declared field can read them."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        env_file = self.config.get("env_file")
        found: dict[str, str | None] = {}
        if isinstance(env_file, str) and Path(env_file).is_file():
            found.update(dotenv_values(env_file))
        found.update(os.environ)
        clients: dict[str, dict[str, str]] = {}
        for key, value in found.items():
            match = _OAUTH_ENV.match(key.upper())
            if match and value is not None:
                clients.setdefault(match["name"].lower(), {})[match["field"].lower()] = value
        return {"oauth": clients} if clients else {}


class Settings(BaseSettings):
    # validate_by_name: Settings(database_url=...) must work too, not only the DATABASE_URL alias.
    # hide_input_in_errors: a startup error must not print the input, which holds keys and secrets.
    model_config = SettingsConfigDict(
        env_prefix="FLUXOPUS_",
        env_file=".env",
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        hide_input_in_errors=True,
    )

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

    # The built-in sign-in's ES256 key (PEM; `\n` escapes allowed), or a file holding it. Default: one
    # generated into the data dir. Replicas on one database must all be given the same one.
    jwt_private_key: SecretStr | None = None
    jwt_private_key_file: Path | None = None
    # Keys rotated out (PEM public keys, or the old private keys): tokens they signed are still accepted.
    jwt_previous_keys: SecretStr | None = None

    # Refused: tokens living longer than this (seconds), whoever signed them.
    jwt_max_lifetime: int = Field(default=366 * 86400, ge=60)
    # How long a session known to be on is trusted before the sessions table is asked again.
    session_check_seconds: float = Field(default=5.0, ge=0)
    # The built-in sign-in (/auth/v1): sign-ups per client address per hour; SMTP for the links it
    # sends (auth/mail.py); how long an invitation's link works.
    signups_per_address: int = Field(default=30, ge=1)
    smtp_url: str | None = None
    smtp_from: str | None = None  # default: fluxopus@<the public URL's host>
    invitation_days: float = Field(default=7.0, gt=0)

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

    # Live events (GraphQL subscriptions taskEvents …): off, no process LISTENs for changes. Changes are
    # recorded in the database's change log whatever this says (kept `live_retention` seconds, to
    # replay to subscribers that resume with lastEventId); `live_queue` events may wait for one
    # subscription before it is cut off as too slow.
    live: bool = True
    live_retention: float = Field(default=3600.0, ge=1.0, description="Seconds the change log keeps changes")
    live_queue: int = Field(default=1000, ge=1, description="Events waiting for one subscription before it is closed")

    # Searches one user may have embedding at once in a process; more wait their turn.
    model_calls_per_user: int = Field(default=4, ge=1)
    # Skill templates render in worker processes, each render bounded in CPU time and memory.
    template_workers: int = Field(default=2, ge=1, le=64)
    template_cpu_seconds: float = Field(default=0.5, gt=0, le=60)
    template_memory_mb: int = Field(default=128, ge=16, le=4096)

    # Skill tools (ai/tools.py): the hosts generic HTTP tools may call (comma-separated, host or
    # host:port; an address in a private, loopback or link-local range only when listed as that
    # address itself), the rounds of tool calls a run may make, and seconds to wait for one call.
    tool_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    tool_max_steps: int = Field(default=5, ge=1, le=50)
    tool_timeout: float = Field(default=20.0, gt=0)

    # Monthly tokens per company (input + output) unless the company has its own budget.
    token_budget: int = Field(default=1_000_000, ge=0)
    # Bytes of knowledge (titles and content) per company unless the company has its own quota.
    storage_quota: int = Field(default=100 * 1024 * 1024, ge=0)

    # Connections (OAuth to third-party tools). Where browsers reach this service: the providers
    # redirect to <public_url>/api/connections/callback/<provider>, which must be registered there.
    public_url: str | None = None  # default http://<host>:<port>
    # The frontend: callbacks end there (?connection=<provider>&status=connected|error), and
    # `redirect_to` must be on its origin.
    app_url: str | None = None  # default: public_url
    oauth: dict[str, OAuthProviderSettings] = Field(default_factory=dict)
    oauth_timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for an OAuth provider")
    # Seals provider tokens (AES-256-GCM). Embedded default: a key generated into the data dir.
    # With DATABASE_URL set it is required, the same on every replica, once a provider is configured.
    encryption_key: SecretStr | None = None
    # Keys rotated out: still accepted for reading what they sealed.
    encryption_old_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

    # Request bodies: every route, and the larger allowance where knowledge content travels (1 MB of
    # UTF-8 can be 6 MB of JSON escapes): knowledge writes and GraphQL with a bearer token.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_upload_bytes: int = Field(default=8_388_608, ge=1024)
    # A WebSocket message (GraphQL over graphql-transport-ws).
    max_ws_message_bytes: int = Field(default=1_048_576, ge=1024)
    # JSON nested deeper than this is refused (recursive validators and jsonb would overflow).
    max_json_depth: int = Field(default=64, ge=4, le=500)
    # Seconds a client has to send a request's headers (slowloris); `fluxopus serve` only.
    header_timeout: float = Field(default=15.0, gt=0)

    # GraphQL documents: limits checked before a document is validated or run (schema/limits.py).
    graphql_max_bytes: int = Field(default=65_536, ge=1024, description="Size of the document's text")
    graphql_max_tokens: int = Field(default=5_000, ge=100)
    graphql_max_depth: int = Field(default=15, ge=2)
    graphql_max_aliases: int = Field(default=100, ge=0)
    graphql_max_directives: int = Field(default=50, ge=0)
    graphql_max_fields: int = Field(default=2_000, ge=10, description="Fields once fragments are expanded")
    graphql_max_merged_fields: int = Field(default=25, ge=2, description="Fields merging into one response path")
    graphql_max_cost: int = Field(default=20_000, ge=100)
    # Queries whose every field has a plan run as one SQL statement (schema/compiled.py); off, every
    # query runs through Strawberry's executor (the differential tests compare the two).
    graphql_compiled_reads: bool = True

    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    # The budget's statements, outside a request's own transaction (db/engine.py).
    db_service_pool_size: int = Field(default=4, ge=1)
    # Seconds a request waits for a free connection before it is answered 503 (retry shortly).
    db_pool_timeout: float = Field(default=30.0, gt=0)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # human: one readable line per request; json: one JSON object per line (for log collectors).
    log_format: Literal["human", "json"] = "human"
    # /metrics (Prometheus). Without a token it answers only this host and private networks.
    metrics: bool = True
    metrics_token: SecretStr | None = None

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [o.strip() for o in value.split(",") if o.strip()]
        return [browser_origin(o) for o in value] if isinstance(value, list) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, dotenv_settings, OAuthEnvironment(settings_cls), file_secret_settings

    _split_old_keys = field_validator("encryption_old_keys", mode="before")(_words)

    @field_validator("tool_hosts", mode="before")
    @classmethod
    def _tool_hosts(cls, value: object) -> object:
        hosts = _words(value)
        if isinstance(hosts, list):
            return [str(h).strip().lower().rstrip(".") for h in hosts if str(h).strip()]
        return hosts

    @field_validator("encryption_key", "encryption_old_keys")
    @classmethod
    def _keys_parse(cls, value: SecretStr | list[SecretStr] | None) -> object:
        for key in value if isinstance(value, list) else [value] if value is not None else []:
            try:
                parse_key(key.get_secret_value())
            except ValueError:
                raise ValueError(
                    "FLUXOPUS_ENCRYPTION_KEY and FLUXOPUS_ENCRYPTION_OLD_KEYS must each be "
                    "a 32-byte key, base64-encoded; make one with: openssl rand -base64 32"
                ) from None
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("smtp", "smtps"):
            raise ValueError("FLUXOPUS_SMTP_URL must be smtp://[user:password@]host[:port] or smtps://…")
        return value

    @field_validator("public_url", "app_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
            raise ValueError("must be an absolute http(s) URL without query or fragment, e.g. https://app.example.com")
        return value.rstrip("/") if value else value

    @field_validator("jwt_secret")
    @classmethod
    def _secret_long_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError("FLUXOPUS_JWT_SECRET must be at least 32 characters (HS256 needs a long secret)")
        return value

    @model_validator(mode="after")
    def _signing_keys_readable(self) -> Settings:
        given = [n for n in ("jwt_private_key", "jwt_private_key_file", "jwt_previous_keys") if getattr(self, n)]
        if given and not self.uses_dev_signing_key:
            raise ValueError(
                f"FLUXOPUS_{given[0].upper()} is for the built-in sign-in's own tokens; with FLUXOPUS_JWT_SECRET "
                "or FLUXOPUS_JWKS_URL tokens are signed elsewhere"
            )
        if self.jwt_private_key is not None and self.jwt_private_key_file is not None:
            raise ValueError("set FLUXOPUS_JWT_PRIVATE_KEY or FLUXOPUS_JWT_PRIVATE_KEY_FILE, not both")
        self.configured_signing_key()
        self.previous_verification_keys()
        return self

    def configured_signing_key(self) -> ec.EllipticCurvePrivateKey | None:
        """FLUXOPUS_JWT_PRIVATE_KEY or the file FLUXOPUS_JWT_PRIVATE_KEY_FILE names; None: the data dir's."""
        if self.jwt_private_key is not None:
            name, text = "FLUXOPUS_JWT_PRIVATE_KEY", self.jwt_private_key.get_secret_value()
        elif self.jwt_private_key_file is not None:
            name = f"FLUXOPUS_JWT_PRIVATE_KEY_FILE ({self.jwt_private_key_file})"
            try:
                text = self.jwt_private_key_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{name}: cannot read the file: {exc}") from None
        else:
            return None
        try:
            return parse_signing_key(text)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None

    def previous_verification_keys(self) -> list[ec.EllipticCurvePublicKey]:
        if self.jwt_previous_keys is None:
            return []
        try:
            return parse_verification_keys(self.jwt_previous_keys.get_secret_value())
        except ValueError as exc:
            raise ValueError(f"FLUXOPUS_JWT_PREVIOUS_KEYS: {exc}") from None

    @model_validator(mode="after")
    def _provider_has_a_key(self) -> Settings:
        if self.embedding_provider == "openai" and not self.openai_api_key:
            raise ValueError("FLUXOPUS_EMBEDDING_PROVIDER=openai needs FLUXOPUS_OPENAI_API_KEY")
        if self.llm_provider in ("openai", "anthropic") and not getattr(self, f"{self.llm_provider}_api_key"):
            name = self.llm_provider.upper()
            raise ValueError(f"FLUXOPUS_LLM_PROVIDER={self.llm_provider} needs FLUXOPUS_{name}_API_KEY")
        return self

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def frontend_url(self) -> str:
        return self.app_url or self.base_url

    @property
    def auth_issuer(self) -> str:
        """The `iss` of the tokens this server signs: stable whatever host or port it listens on."""
        return f"{self.public_url}/auth/v1" if self.public_url else BUILT_IN_ISSUER

    @property
    def mail_sender(self) -> str:
        return self.smtp_from or f"fluxopus@{urlsplit(self.base_url).hostname or 'localhost'}"

    @property
    def encryption_key_path(self) -> Path:
        return self.data_dir / "encryption-key"

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
