"""The dashboard end to end in a real headless Chromium (Debian's package, driven by
Playwright): a trade appears, an overseer logs in, presses "halt", sees the economy halted,
resumes it, and checks an entry's inclusion proof in the browser."""

import shutil

import pytest

from tests.keys import fixed_secret
from tests.live_server import OVERSEER_TOKEN, LiveServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def operator_key_with_a_plus(folder):
    """An operator key whose verifier string has '+' inside its base64 (a parser that splits
    on every '+' breaks on it: it once did)."""
    from sandbank.audit.checkpoint import verifier_key

    for i in range(1000):
        secret = fixed_secret(i)  # the key file holds the run secret the operator key is from
        if "+" in verifier_key("sandbank-operator", secret.key("operator").public).split("+", 2)[2]:
            secret.save(folder / "operator.key")
            return
    raise AssertionError("no such key in 1000 tries")


def test_dashboard_shows_trades_halts_and_verifies_proofs(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    operator_key_with_a_plus(tmp_path)
    with LiveServer(tmp_path) as srv, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{srv.url}/dashboard")
            expect(page.locator("#trades tr.trade").first).to_be_visible(timeout=30_000)
            expect(page.locator("#conn")).to_have_text("live", timeout=10_000)
            assert page.locator("#oversight").is_hidden()  # nothing of oversight before login
            page.fill("#token", "not-the-token-at-all")
            page.click("#login button")
            expect(page.locator("#action-result")).to_have_text("login refused", timeout=10_000)
            page.fill("#token", OVERSEER_TOKEN)
            page.click("#login button")
            expect(page.locator("#oversight")).to_be_visible(timeout=10_000)
            expect(page.locator("#economy")).to_have_text("running")
            page.click("#halt")
            expect(page.locator("#economy")).to_have_text("halted", timeout=15_000)
            resume = page.locator("#tickets button.resume").first
            expect(resume).to_be_visible(timeout=10_000)
            resume.click()
            expect(page.locator("#economy")).to_have_text("running", timeout=15_000)
            # the audit explorer: an entry's inclusion proof checked in the browser
            page.click("#reload-entries")
            page.locator("#entries button.prove").first.click()
            expect(page.locator("#verified")).to_be_visible(timeout=10_000)
            # and a tampered bundle is refused by the same code
            verdict = page.evaluate("""async () => {
                const b = await (await fetch('/v1/proof/1')).json();
                const key = document.getElementById('pinned').value;
                await window.sandbankVerify(b, key);
                b.entry = b.entry.replace('"seq":1', '"seq":1 ');
                try { await window.sandbankVerify(b, key); return 'accepted'; }
                catch (e) { return e.message; }
            }""")
            assert "not in the signed tree" in verdict
            # what the public gets of an overseers' entry: withheld, and still proven
            verdict = page.evaluate("""async () => {
                const recent = await (await fetch('/v1/entries/recent?limit=500')).json();
                const hidden = recent.entries.find((e) => e.kind === 'withheld');
                const b = await (await fetch('/v1/proof/' + hidden.seq)).json();
                if (b.entry !== null) return 'served in full';
                await window.sandbankVerify(b, document.getElementById('pinned').value);
                b.leaf_hash = b.leaf_hash.replace(/^./, (c) => c === 'A' ? 'B' : 'A');
                try { await window.sandbankVerify(b, document.getElementById('pinned').value);
                      return 'a wrong leaf accepted'; }
                catch (e) { return 'ok: ' + e.message; }
            }""")
            assert verdict.startswith("ok: ") and "not in the signed tree" in verdict
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
