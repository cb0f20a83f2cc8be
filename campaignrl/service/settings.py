"""The decision service's settings: defaults < config file (TOML or YAML) < environment < flags.

Every setting has an environment variable, ``CAMPAIGNRL_`` + its name in capitals
(``CAMPAIGNRL_HASH_KEY``, ``CAMPAIGNRL_STORE_URL``...), and a key of the same name in the
config file. ``campaignrl serve`` passes its flags as overrides. Secrets (the hashing key, the
admin token, the API key, the signing key) come from the environment or the config file only,
never from flags: any user of the machine can read a process's arguments.

:class:`ExportSettings` is the part ``campaignrl logs export`` needs (where the store and the
policy versions are, how rewards are joined); :class:`ServiceSettings` adds the rest and
requires a hashing key.
"""

from __future__ import annotations

import contextvars
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from campaignrl.service.privacy import MIN_KEY_BYTES

__all__ = [
    "ENV_PREFIX",
    "MIN_TOKEN_CHARS",
    "ExportSettings",
    "ServiceSettings",
    "default_versions_dir",
    "read_config_file",
]

ENV_PREFIX = "CAMPAIGNRL_"
"""prefix of every setting's environment variable"""
MIN_TOKEN_CHARS = 16
"""shortest admin token or API key accepted"""

_CONFIG_VALUES: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "campaignrl_service_config", default=None
)
"""the config file's values while :meth:`ExportSettings.load` builds the settings"""


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of a ``.toml``, ``.yaml`` or ``.yml`` file, as a flat mapping.

    Raises:
        ValueError: If the file is missing, has another suffix, does not parse or is not a
            mapping of setting names (naming ``--config`` and the file).
    """
    from campaignrl._yaml import describe_error, strict_load

    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ValueError(f"argument --config: must be a .toml or .yaml file, got {str(file)!r}")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"argument --config: {str(file)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"argument --config: cannot read {str(file)!r} ({exc})") from None
    if suffix == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"argument --config: {str(file)!r}: {exc}") from None
    else:
        import yaml

        try:
            data = strict_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"argument --config: {str(file)!r}: {describe_error(exc)}") from None
        data = {} if data is None else data
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ValueError(
            f"argument --config: {str(file)!r} must hold a mapping of setting names to values, "
            f"got {type(data).__name__}"
        )
    return data


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The config file's values (set by :meth:`ExportSettings.load`), below the environment."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (_CONFIG_VALUES.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_CONFIG_VALUES.get() or {})


def default_versions_dir(store_url: str) -> Path:
    """Where policy versions live when ``versions_dir`` is not set: beside a SQLite file.

    ``sqlite:///data/decisions.db`` keeps its versions in ``data/decisions.db.versions/``: the
    store and the policies it logged decisions for stay together.

    Raises:
        ValueError: For a PostgreSQL store: its workers may run on several machines, so the
            folder must be named (``versions_dir``).

    Examples:
        >>> default_versions_dir("sqlite:///data/decisions.db")
        PosixPath('data/decisions.db.versions')
    """
    if store_url.startswith("sqlite:///"):
        return Path(store_url[len("sqlite:///") :] + ".versions")
    raise ValueError(
        "`versions_dir` (CAMPAIGNRL_VERSIONS_DIR, --versions-dir) is required with a "
        f"non-SQLite store: name a folder every worker can read and write, got store "
        f"{store_url.split('@')[-1]!r}"
    )


class ExportSettings(BaseSettings):
    """Where the store and the policy versions are, and how rewards are joined.

    Unknown keys are ignored here (a service config file holds more); :class:`ServiceSettings`
    refuses them.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", validate_default=True, frozen=True
    )

    store_url: str = "sqlite:///decisions.db"
    """the decision store: ``sqlite:///decisions.db`` (WAL) or ``postgresql://...``"""
    versions_dir: Path | None = None
    """where every policy version served is kept (default: beside a SQLite store,
    ``<db file>.versions``; required with PostgreSQL)"""
    reward_window_seconds: float = Field(3600.0, gt=0, allow_inf_nan=False)
    """how long after its activation a decision waits for rewards"""
    aggregation: Literal["sum", "earliest", "max"] = "sum"
    """how several on-time rewards of one decision combine"""
    default_reward: float = Field(0.0, allow_inf_nan=False)
    """the reward of an active decision whose window closed without an on-time reward"""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init keywords) over the environment over the config file over defaults."""
        return (init_settings, env_settings, _ConfigFileSource(settings_cls))

    @classmethod
    def load(cls, config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Any:
        """The settings from the defaults, ``config_file``, the environment and ``overrides``.

        Args:
            config_file: A TOML or YAML file of settings, or ``None``.
            **overrides: Values from flags; ``None`` values are left out (flag not given).

        Raises:
            ValueError: Naming each bad setting with its environment variable, one per line.
        """
        values = read_config_file(config_file) if config_file is not None else {}
        token = _CONFIG_VALUES.set(values)
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise ValueError(settings_error_message(exc, cls)) from None
        finally:
            _CONFIG_VALUES.reset(token)

    @property
    def resolved_versions_dir(self) -> Path:
        """``versions_dir``, or its default beside a SQLite store."""
        if self.versions_dir is not None:
            return self.versions_dir
        return default_versions_dir(self.store_url)


def _secret_length(value: SecretStr | None, name: str, minimum: int, unit: str) -> None:
    if value is None:
        return
    raw = value.get_secret_value()
    size = len(raw.encode("utf-8")) if unit == "bytes" else len(raw)
    if size < minimum:
        raise ValueError(
            f"must be at least {minimum} {unit}, got {size} {unit} (set {ENV_PREFIX}"
            f"{name.upper()} to a longer secret, e.g. the output of "
            f"`python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )


class ServiceSettings(ExportSettings):
    """Everything ``campaignrl serve`` needs. See the module docstring for the sources.

    Raises:
        pydantic.ValidationError: From the constructor; :meth:`load` turns it into a
            ``ValueError`` naming each setting and its environment variable.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, frozen=True
    )

    policy_dir: Path | None = None
    """a policy artifact to serve: proposed as a new version unless a stored version has the
    same manifest (so a restart resumes at the version that was serving, learned ones
    included)"""
    host: str = "127.0.0.1"
    """address to listen on (loopback by default: put a TLS proxy in front for a network)"""
    port: int = Field(8000, ge=1, le=65535)
    """TCP port"""
    workers: int = Field(1, ge=1, le=64)
    """uvicorn worker processes. Every worker writes to the one store (PostgreSQL; or SQLite
    in WAL on one machine's local disk, where writers take turns) and reads the one
    ``versions_dir``; ``/metrics`` sums over the workers (prometheus-client's multiprocess
    mode). A version swapped in through one worker is served by the others within
    ``refresh_seconds``"""
    exploration_epsilon: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    """uniform exploration share in place of the policy's own; ``None`` keeps the policy's"""
    seed: int | None = Field(None, ge=0)
    """seed of the exploration generator; ``None`` draws one from the OS (logged at start)"""
    learn: bool = False
    """learn online from joined rewards (linear, tabular and Gaussian Thompson policies)"""
    learn_every_seconds: float = Field(60.0, gt=0, allow_inf_nan=False)
    """publish a learned version at most this often (when rows are pending)"""
    learn_every_rewards: int | None = Field(None, ge=1)
    """also publish as soon as this many joined rows are pending"""
    hash_key: SecretStr | None = None
    """secret key of the customer-id hashes (HMAC-SHA256), at least 16 bytes; required"""
    admin_token: SecretStr | None = None
    """bearer token of the admin endpoints (``PUT /v1/policy``, rollback); without one they
    answer 403"""
    api_key: SecretStr | None = None
    """when set, decision, reward and policy-reading endpoints need ``X-API-Key``"""
    signing_key: SecretStr | None = None
    """when set, every policy artifact must carry a valid HMAC-SHA256 ``signature``"""
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """largest request body (413 beyond), except policy uploads"""
    max_artifact_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """largest policy upload, and largest total size of the files it unpacks to"""
    max_batch: int = Field(1000, ge=1, le=100_000)
    """most decisions or rewards in one batch request"""
    refresh_seconds: float = Field(1.0, gt=0, allow_inf_nan=False)
    """how often a worker checks ``versions_dir`` for a version another worker swapped in
    (``PUT /v1/policy``, rollback, online learning): with several workers, the longest a
    worker keeps serving the previous version after a swap was acknowledged (each decision
    logs the version that made it)"""
    graceful_timeout_seconds: float = Field(30.0, gt=0, allow_inf_nan=False)
    """on SIGTERM, how long in-flight requests may take to finish"""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    """uvicorn's log level"""

    @field_validator("hash_key", mode="after")
    @classmethod
    def _hash_key_given(cls, value: SecretStr | None) -> SecretStr:
        if value is None:
            raise ValueError(
                f"is required: set {ENV_PREFIX}HASH_KEY (or hash_key in the config file) to a "
                f"secret of at least {MIN_KEY_BYTES} bytes, e.g. the output of "
                f"`python -c 'import secrets; print(secrets.token_hex(32))'`; keep it: "
                f"customer hashes made with another key do not match"
            )
        _secret_length(value, "hash_key", MIN_KEY_BYTES, "bytes")
        return value

    @field_validator("admin_token", "api_key", mode="after")
    @classmethod
    def _token_long_enough(cls, value: SecretStr | None, info: Any) -> SecretStr | None:
        _secret_length(value, info.field_name, MIN_TOKEN_CHARS, "characters")
        return value

    @field_validator("signing_key", mode="after")
    @classmethod
    def _signing_key_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty when set")
        return value

    @field_validator("host", mode="after")
    @classmethod
    def _host_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    def secret(self, name: str) -> bytes | None:
        """The UTF-8 bytes of a secret setting (stripped, as read from a file), or ``None``."""
        value = getattr(self, name)
        return None if value is None else value.get_secret_value().strip().encode("utf-8")

    def to_env(self) -> dict[str, str | None]:
        """Every setting as its environment variable (``None``: unset it), for workers.

        ``campaignrl serve --workers N`` puts these in the environment of uvicorn's worker
        processes, which build their app with :func:`~campaignrl.service.app.create_app_from_env`.
        """
        out: dict[str, str | None] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            key = ENV_PREFIX + name.upper()
            if value is None:
                out[key] = None
            elif isinstance(value, SecretStr):
                out[key] = value.get_secret_value()
            elif isinstance(value, bool):
                out[key] = "true" if value else "false"
            elif isinstance(value, float):
                out[key] = repr(value)
            else:
                out[key] = str(value)
        return out


def settings_error_message(exc: ValidationError, cls: type[BaseSettings]) -> str:
    """One line per bad setting: ``hash_key (CAMPAIGNRL_HASH_KEY): is required ...``.

    Values are never shown (a setting may be a secret).
    """
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error.get("loc") or ()
        name = str(loc[0]) if loc else "settings"
        message = str(error.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden":
            known = ", ".join(sorted(cls.model_fields))
            lines.append(f"unknown setting {name!r}; known settings: {known}")
            continue
        lines.append(f"setting `{name}` ({ENV_PREFIX}{name.upper()}): {message}")
    return "; ".join(lines)
