"""The `uploads:` section of gateway.yaml: what customers and agents may upload, where it is kept."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.media.sniff import KNOWN_TYPES


class UploadsSettings(BaseModel):
    """Upload limits and storage; types are decided by the file's first bytes, not the client's claim."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Larger uploads are refused with 413 before they are stored.
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    # Content types accepted, as sniffed from the magic bytes (anything else: 415).
    allowed_types: tuple[str, ...] = (
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/pdf",
    )
    # The local directory of the file store (relative paths are relative to the working directory).
    dir: str = "data/uploads"
    # How long a signed /media URL stays valid.
    url_ttl_s: int = Field(default=3600, ge=60, le=7 * 86_400)
    # Hours an uploaded file is kept when no message uses it (a picked picture never sent), then deleted.
    unsent_keep_h: int = Field(default=24, ge=1, le=24 * 365)
    # HMAC key of the signed URLs; unset = a random key kept in `{dir}/.url-key` (shared by the
    # processes on one disk, kept across restarts).
    secret: str | None = None

    @field_validator("allowed_types")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(KNOWN_TYPES))
        if unknown:
            raise ValueError(f"unknown type(s) {', '.join(unknown)}; known: {', '.join(KNOWN_TYPES)}")
        return value

    @field_validator("secret")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None
