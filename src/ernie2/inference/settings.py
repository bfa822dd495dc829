"""The inference server's limits and batching settings (no web framework needed to read them)."""

from __future__ import annotations

from dataclasses import dataclass, field

LONG_POLICIES = ("truncate", "reject")


@dataclass
class ServeSettings:
    max_batch: int = 32  # texts per model call
    max_wait_ms: float = 5.0  # how long a lone request waits for others to batch with
    max_body_bytes: int = 1 << 20
    max_texts: int = 64  # per request
    max_chars: int = 20_000  # per text
    max_len: int | None = None  # tokens per text (pair); None: the model's own
    long: str = "truncate"  # texts past max_len: "truncate" or "reject"
    max_queued: int = 4096  # texts waiting for the model before requests get 429
    header_timeout: float = 10.0  # seconds a connection may take to send a request's headers
    body_timeout: float = 30.0  # seconds a request may take to send its body
    api_key: str | None = field(default=None, repr=False)  # required of every request when set

    def __post_init__(self) -> None:
        if self.long not in LONG_POLICIES:
            raise ValueError(f"long must be one of {', '.join(LONG_POLICIES)}, got {self.long!r}")
        for name in ("max_batch", "max_body_bytes", "max_texts", "max_chars", "max_queued"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must not be negative, got {self.max_wait_ms}")
        for name in ("header_timeout", "body_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be empty")


__all__ = ["LONG_POLICIES", "ServeSettings"]
