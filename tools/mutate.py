"""Mutation testing of the modules where a bug costs most (`make mutate`; docs/testing.md).

mutmut (3.x) plants one small bug at a time — an operator, a constant, a comparison, a
dropped argument — and runs the tests that reach the mutated function; a mutant no test
kills is a bug the suite would let through. Each group below mutates a few modules against
the test files that exercise them (the whole suite per mutant would take hours on two
cores), in a scratch copy of the tree under build/mutate/<group>, so runs do not disturb the
working tree and a rerun resumes where it stopped.

    python tools/mutate.py                # every group, then the table of scores
    python tools/mutate.py ledger auth    # some groups
    python tools/mutate.py --report       # the table from the last runs
    python tools/mutate.py --tests-from REV exchange   # today's code, REV's tests
    python tools/mutate.py --survivors ledger   # the diff of each surviving mutant

Exit status: 0 when every group meets its target (TARGET of the non-equivalent mutants
killed, equivalents being listed in EQUIVALENT), 1 when one does not, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "mutate"
TARGET = 0.95

KEPT_DIGESTS = ("test_digest.py::"
                "test_the_kept_digests_agree_tick_after_tick_through_fills_cancels_and_holds")
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "ledger": (["ledger/ledger.py"],
               ["test_ledger_model.py", "test_ledger.py", "test_kernel.py", "test_amounts.py",
                KEPT_DIGESTS]),
    "exchange": (["markets/orderbook.py", "markets/exchange.py"],
                 ["test_exchange.py", "test_amounts.py", "test_controls.py", KEPT_DIGESTS]),
    "guards": (["kernel/guards.py", "boundary/firewall.py"],
               ["test_guards.py", "test_controls.py", "test_emergency.py", "test_roles.py",
                "test_firewall.py"]),
    "audit": (["audit/log.py", "audit/verify.py"],
              ["test_audit.py", "test_verify.py", "test_merkle.py",
               *[f"test_trust.py::{t}" for t in (
                   "test_a_rewritten_kind_column_hides_alerts_from_the_tools_but_not_from_verify",
                   "test_a_rewritten_message_body_is_caught_by_verify",
                   "test_a_store_row_of_the_wrong_type_is_a_finding_not_a_crash",
                   "test_a_truncated_log_passes_alone_and_fails_against_its_kept_checkpoint",
                   "test_an_action_index_row_pointing_elsewhere_is_caught_by_verify")]]),
    "identity": (["identity/keys.py"],
                 ["test_keys.py", "test_kernel.py", "test_auth.py", "test_guards.py"]),
    "auth": (["server/auth.py"], ["test_auth.py", "test_server.py", "test_fuzz_api.py"]),
    "digest": (["kernel/state.py", "kernel/digest.py"],
               ["test_digest.py", "test_audit.py", "test_kernel.py", "test_amounts.py",
                "test_reputation.py", "test_pricing.py", "test_boundary.py", "test_roles.py",
                "test_mechanism.py"]),
}

# mutants that change nothing observable, by name, with why (each was read)
_L = "sandbank.ledger.ledger.xǁLedgerǁ"
_X = "sandbank.markets.exchange.x_place_order__mutmut_"
_UNREACHABLE_LOOP = ("the step-down loop of a market buy never runs: the quantity is sized so "
                     "that price × q × (1 + fee) fits, fees round down and rebates only lower "
                     "them, so notional + fee never exceeds the cash")
EQUIVALENT: dict[str, str] = {
    "sandbank.kernel.guards.x_identity_guard__mutmut_2":
        "overseer = '' instead of None: both false, and it is read only when true",
    "sandbank.kernel.guards.x_freeze_guard__mutmut_1":
        "actor >= OPERATOR: the operator has no agent record, so nothing changes for it",
    "sandbank.kernel.guards.x_freeze_guard__mutmut_8":
        "f'agent_{status}' for a frozen agent is 'agent_frozen', the reason it replaces",
    _L + "__init____mutmut_14": "the expiry heap's counter starting at 1: only its order counts",
    _L + "apply_transfer__mutmut_31": "the counter stepping by 2: only its order counts",
    _L + "apply_transfer__mutmut_82": "system_seq = id when they are already equal: no change",
    _L + "execute__mutmut_6": "a lone transfer through the chain path instead of the fast "
                              "path: the same result (the fast path is an optimisation)",
    _L + "execute__mutmut_44": "failed_at = -2: it is only compared with >= 0",
    _L + "_validate__mutmut_23": "pending_rec = '': read only after it is set from a lookup",
    _L + "_validate__mutmut_25": "pending_id >= 0: a resolution of id 0 is refused first by "
                                 "pending_id_must_be_positive, whatever was looked up",
    _L + "_validate__mutmut_37": "kind != VOID_PENDING: 'amount or the hold's amount' leaves a "
                                 "non-zero amount as it is either way",
    _L + "_validate__mutmut_58": "the key argument of _validate_resolution is not read",
    _L + "_validate_resolution__mutmut_30": "amount < 0: a zero amount was already replaced by "
                                            "the hold's (never zero)",
    _L + "failures_to_remember__mutmut_10": "an id of 0 remembered as failed: id 0 is refused "
                                            "first by id_must_be_positive",
    **{_L + f"failures_to_remember__mutmut_{n}": "zip without strict: specs and results "
       "always have the same length" for n in (3, 6, 7)},
    "sandbank.identity.keys.x_verify_signature__mutmut_1":
        "'and' for 'or' in the length check: a key or signature of the wrong length still "
        "fails, in cryptography's own check (InvalidSignature or ValueError, both caught)",
    "sandbank.identity.keys.x_read_secret_file__mutmut_37":
        "secrets.token_hex(None) is 32 bytes, the default entropy",
    **{f"sandbank.kernel.state.xǁEconomyStateǁapply_dict__mutmut_{n}":
       "the default of an entry's tick: every logged entry carries its tick"
       for n in (18, 20, 23)},
    "sandbank.kernel.state.xǁEconomyStateǁlimit__mutmut_18":
        "v <= out: at equal values the tightest limit is the same either way",
    "sandbank.kernel.state.xǁEconomyStateǁapply__mutmut_1":
        "the default tick is read only by appliers that ignore it: the kernel's registry and "
        "ledger records (every mechanism passes its tick)",
    "sandbank.markets.orderbook.xǁBookǁcrossed__mutmut_3":
        "best_price(None) is the ask side (side == BUY is false), as SELL is",
    **{_X + str(n): _UNREACHABLE_LOOP for n in (297, 299, 300, 301, 302, 303, 304, 305, 306,
                                                307, 308, 309, 310, 311, 312, 313, 314)},
    **{_X + str(n): "settlement_failed after validation is unreachable (test_reasons.py, "
       "UNREACHABLE)" for n in (431, 432, 433, 434, 435, 436)},
    **{_X + str(n): "a position cap's default None for 0: both false, no cap"
       for n in (128, 130)},
    "sandbank.markets.exchange.x_market_view__mutmut_3":
        "best_price(None) is the ask side (side == BUY is false), as SELL is",
    "sandbank.markets.exchange.x__call_auction__mutmut_5":
        "orders(None) is the ask side (side == BUY is false), as SELL is",
    **{f"sandbank.markets.exchange.x__call_auction__mutmut_{n}":
       "buyers/sellers listed at zero volume: the loop stops at once on 'not volume'"
       for n in (23, 27)},
    "sandbank.markets.exchange.x__call_auction__mutmut_43":
        "a fill without the volume cap: the buyers' and sellers' quantities at the clearing "
        "price are bounded by the volume (its min) already",
    "sandbank.markets.exchange.x__call_auction__mutmut_86":
        "volume += q: the cap it feeds never binds (see mutant 43)",
    "sandbank.markets.exchange.x_clearing_price__mutmut_21":
        "demand + supply for |demand - supply|: at equal volume v, d + s = 2v + |d - s|, the "
        "same order",
    "sandbank.markets.exchange.x_clearing_price__mutmut_29":
        "key >= best_key: two prices never have equal keys (the last member is -p)",
    "sandbank.audit.log.xǁAuditLogǁ__init____mutmut_9":
        "the range rebuilt from a store of size 0 is CompactRange(0, []): the empty range",
    "sandbank.audit.verify.x_verify_log__mutmut_33":
        "next(entries) without a default: the header (entry 0) was just read, so the "
        "iterator yields at least it",
    "sandbank.audit.verify.x_verify_log__mutmut_322":
        "'truncated' for r.size <= kept.size: at equal sizes the last checkpoint has the kept "
        "size, so the root comparison decides and this line is never reached",
    "sandbank.audit.verify.x_verify_log__mutmut_87":
        "cp.tick < last_tick: tick is the checkpoints table's primary key and they come in "
        "tick order, so no checkpoint repeats the last one's tick",
    "sandbank.audit.verify.x_verify_log__mutmut_67":
        "a non-integer tick named as the bad checkpoint: tick is an INTEGER PRIMARY KEY "
        "(SQLite's rowid; BIGINT in PostgreSQL), so a stored tick is always an int",
    "sandbank.audit.verify.x__row_ok__mutmut_21":
        "the same for an entry's seq (INTEGER PRIMARY KEY): always an int when stored",
    "sandbank.audit.verify.xǁ_NodeCheckerǁ__call____mutmut_11":
        "'' for None as the unreadable node: either differs from every 32-byte hash",
}
CODE = re.compile(r"[a-z][a-z0-9_]*")  # a refusal reason or a result code: never "wording"


def wording_only(diff: str) -> bool:
    """Does the mutant change only the wording of human-readable text — a message's words
    wrapped in XX or put in another case — and no code, reason, key or value? Those are
    reported apart: the tests pin every reason and that a message is there, not its words."""
    minus = [ln[1:] for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    if len(minus) != 1 or len(plus) != 1:
        return False
    old, new = _strings(minus[0]), _strings(plus[0])
    if old is None or new is None or len(old) != len(new) or old == new:
        return False
    if _strip_strings(minus[0]) != _strip_strings(plus[0]):
        return False  # something outside the strings changed
    for a, b in zip(old, new, strict=True):
        if a == b:
            continue
        body = a.strip("\"'").removeprefix("f").strip("\"'")
        if CODE.fullmatch(body):
            return False  # a code, not wording
        if not (b.replace("XX", "") == a or b.lower() == a.lower()):
            return False
    return True


def _strings(line: str) -> list[str] | None:
    import io
    import tokenize

    try:
        toks = list(tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):  # a fragment of a statement
        return re.findall(r"f?\"[^\"]*\"|f?'[^']*'", line)
    return [t.string for t in toks if t.type == tokenize.STRING
            or t.type in (getattr(tokenize, "FSTRING_MIDDLE", -1),)]


def _strip_strings(line: str) -> str:
    return re.sub(r"(f?\"[^\"]*\"|f?'[^']*')", "S", line.strip())


def _config(group: str, d: Path) -> str:
    modules, tests = GROUPS[group]
    present = [t for t in tests if (d / "tests" / t.split("::")[0]).exists()]
    only = ", ".join(f'"src/sandbank/{m}"' for m in modules)
    sel = ", ".join(f'"tests/{t}"' for t in present)
    return f"""
[tool.mutmut]
source_paths = ["src"]
also_copy = ["scenarios", "examples", "docs", "README.md"]
only_mutate = [{only}]
pytest_add_cli_args_test_selection = [{sel}]
pytest_add_cli_args = ["-p", "no:cacheprovider", "--hypothesis-seed=0"]
"""


def _prepare(group: str, tests_from: str | None) -> Path:
    d = WORK / group
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for name in ("src", "tests", "scenarios", "examples", "docs"):
        shutil.copytree(ROOT / name, d / name, ignore=shutil.ignore_patterns("__pycache__"))
    if tests_from:  # the suite as it was at another commit, against today's code
        shutil.rmtree(d / "tests")
        archive = subprocess.run(["git", "archive", tests_from, "tests"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(d)], input=archive, check=True)
    shutil.copy(ROOT / "README.md", d / "README.md")
    pyproject = (ROOT / "pyproject.toml").read_text()
    pyproject = re.sub(r"\n\[tool\.mutmut\].*?(?=\n\[|\Z)", "", pyproject, flags=re.S)
    (d / "pyproject.toml").write_text(pyproject + _config(group, d))
    return d


def _mutmut(d: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "SANDBANK_TEST_PG": ""}
    return subprocess.run([str(exe), *args], cwd=d, env=env, text=True,
                          capture_output=capture)


_READ = """
import json
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files
out = {}
for path in walk_mutatable_files():
    m = SourceFileMutationData(path=path)
    m.load()
    for name, code in m.exit_code_by_key.items():
        status = status_by_exit_code[code]
        out[name] = [status, "" if status == "killed" else get_diff_for_mutant(name, path=path)]
print(json.dumps(out))
"""
_cache: dict[str, dict[str, list[str]]] = {}


def results(group: str) -> dict[str, list[str]]:
    """mutant name -> [status, diff (for the ones not killed)], read from mutmut's files in
    one process (`mutmut show` per mutant would take a second each)."""
    if group in _cache:
        return _cache[group]
    d = WORK / group
    if not (d / "mutants").exists():
        return {}
    r = subprocess.run([sys.executable, "-c", _READ], cwd=d, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"cannot read the results of {group}: {r.stderr[-500:]}")
    _cache[group] = json.loads(r.stdout)
    return _cache[group]


KILLED = ("killed", "timeout", "segfault")


def score(group: str) -> tuple[int, int, int, int, list[str]]:
    """(mutants, killed, equivalent, wording-only survivors, the other survivors)"""
    res = results(group)
    killed = sum(1 for st, _ in res.values() if st in KILLED)
    equivalent = [n for n, (st, _) in res.items() if st not in KILLED and n in EQUIVALENT]
    rest = sorted(n for n, (st, _) in res.items() if st not in KILLED and n not in EQUIVALENT)
    wording = [n for n in rest if wording_only(res[n][1])]
    others = [n for n in rest if n not in wording]
    return len(res), killed, len(equivalent), len(wording), others


def show(group: str, name: str) -> str:
    status, diff = results(group)[name]
    return f"# {name}: {status}\n{diff}"


def report(groups: list[str]) -> bool:
    """The table: the score is killed / (mutants - equivalent); 'without wording' also
    leaves out the survivors that change only a message's words (the target is on it)."""
    print("| group | modules | mutants | killed | equivalent | wording only | score "
          "| score without wording |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    ok = True
    for g in groups:
        n, killed, eq, wording, _ = score(g)
        if not n:
            print(f"| {g} | {', '.join(GROUPS[g][0])} | (not run) | | | | | |")
            ok = False
            continue
        s = killed / (n - eq) if n > eq else 1.0
        s2 = killed / (n - eq - wording) if n > eq + wording else 1.0
        ok &= s2 >= TARGET
        print(f"| {g} | {', '.join(GROUPS[g][0])} | {n} | {killed} | {eq} | {wording} "
              f"| {s:.1%} | {s2:.1%} |")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("groups", nargs="*", help=f"groups to run (default all: {', '.join(GROUPS)})")
    ap.add_argument("--report", action="store_true", help="only print the scores of the last runs")
    ap.add_argument("--survivors", action="store_true", help="show each surviving mutant's diff")
    ap.add_argument("--tests-from", metavar="REV",
                    help="mutate today's code against the tests of commit REV (a 'before')")
    ap.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    unknown = [g for g in a.groups if g not in GROUPS]
    if unknown:
        print(f"unknown group {unknown[0]!r}; groups: {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    groups = a.groups or list(GROUPS)
    if a.survivors:
        for g in groups:
            for name in score(g)[4]:
                print(show(g, name))
        return 0
    if not a.report:
        for g in groups:
            print(f"== {g}: {', '.join(GROUPS[g][0])}", flush=True)
            d = _prepare(g, a.tests_from)
            r = _mutmut(d, "run", "--max-children", str(a.max_children), capture=True)
            if r.returncode != 0:
                print(r.stdout[-3000:], r.stderr[-3000:], file=sys.stderr)
                return 1
    return 0 if report(groups) else 1


if __name__ == "__main__":
    sys.exit(main())
