"""Validators decide whether delivered work releases its escrow (checklist 24).

- `deterministic`: the delivery passes iff every required part succeeded. Parts succeed or
  fail by the skill model in `tasks.py`, so this check is exact.
- `judges`: a panel of named judge agents votes pass/fail. A verdict needs `quorum`
  concordant votes; **any disagreement sends the contract to dispute** (never to payment),
  where the task's arbiter (or the operator) decides.
"""

from __future__ import annotations

DETERMINISTIC = "deterministic"
JUDGES = "judges"
KINDS = (DETERMINISTIC, JUDGES)
PASS, FAIL, DISPUTE = "pass", "fail", "dispute"


def deterministic_verdict(failed_parts: list[str]) -> str:
    return FAIL if failed_parts else PASS


def panel_verdict(votes: dict[int, bool], judges: list[int], quorum: int) -> str | None:
    """PASS or FAIL once `quorum` judges agree and none disagrees; DISPUTE as soon as two
    judges disagree (or everyone voted without a quorum); None while votes are missing."""
    passes = sum(1 for v in votes.values() if v)
    fails = len(votes) - passes
    if passes and fails:
        return DISPUTE
    if passes >= quorum:
        return PASS
    if fails >= quorum:
        return FAIL
    if len(votes) == len(judges):
        return DISPUTE
    return None
