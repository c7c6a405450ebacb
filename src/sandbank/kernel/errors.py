"""Reasons an action is rejected by the kernel (guards and mechanisms).

Ledger rejections carry the per-transfer codes of `ledger.codes.TransferResult` as well.
"""

from enum import StrEnum


class Reason(StrEnum):
    malformed_action = "malformed_action"
    unknown_actor = "unknown_actor"
    agent_revoked = "agent_revoked"
    agent_frozen = "agent_frozen"
    signature_missing = "signature_missing"
    bad_signature = "bad_signature"
    stale_nonce = "stale_nonce"
    forbidden = "forbidden"
    rate_limited = "rate_limited"
    transfer_failed = "transfer_failed"
    unknown_owner = "unknown_owner"
    unknown_agent = "unknown_agent"
    unknown_account = "unknown_account"
    unknown_asset = "unknown_asset"
    bad_attestation = "bad_attestation"
    key_already_registered = "key_already_registered"
    invalid_field = "invalid_field"
    owner_agent_limit = "owner_agent_limit"
    spawn_depth_limit = "spawn_depth_limit"
    spawn_children_limit = "spawn_children_limit"
    already_revoked = "already_revoked"


class Reject(Exception):
    """Raised by a guard or mechanism: the action is refused, for `reason`, and logged."""

    def __init__(self, reason: str, message: str, *, results: list[str] | None = None,
                 failed: list[list[object]] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.results = results or []
        self.failed = failed or []


class ConfigError(ValueError):
    """A kernel configuration value is invalid; the message names it."""
