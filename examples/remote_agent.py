"""An agent in its own process, acting on a live sandbox only through its public API.

    SANDBANK_OPERATOR_TOKEN=... sandbank serve --scenario scenarios/live/market.yaml &
    python examples/remote_agent.py --url http://127.0.0.1:8000 --operator-token ...

It has an owner admitted (with the operator's token: a demo shortcut; a real operator admits
owners after checking who they are), joins under that owner with a key that never leaves this
process, waits for the server's endowment, buys widgets from whoever sells them (in the
served scenario: its in-process market makers), and checks — against the operator's signed
checkpoint, pinned with --pin — that its trade is in the log. Exits non-zero if anything
fails.
"""

from __future__ import annotations

import argparse
import sys

from sandbank.client import Client, ClientError
from sandbank.identity.keys import SigningKey
from sandbank.markets.exchange import PlaceOrder


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--operator-token", required=True)
    ap.add_argument("--pin", default=None, help="the operator's verifier key (sandbank status)")
    ap.add_argument("--name", default="remote-1")
    ap.add_argument("--qty", type=int, default=2)
    args = ap.parse_args()
    try:
        client = Client(args.url, pinned_key=args.pin)
        owner_key = SigningKey.generate()
        owner = client.admit_owner(args.operator_token, f"owner-of-{args.name}", owner_key,
                                   "example: admitted by the operator's token")
        me = client.join(owner=owner, name=args.name, owner_key=owner_key)
        print(f"admitted as agent {me.id} (owner {owner})")
        cash = me.wait_funded("CRD")
        print(f"endowed with {cash} CRD")
        best = next(m for m in client.market()["markets"] if m["asset"] == "WGT")
        price = (best["ask"] or best["last_price"] or 100) + 10  # marketable: cross the spread
        before = next(a["balance"] for a in me.observe()["accounts"] if a["asset"] == "WGT")
        nonce = me.act(PlaceOrder(actor=me.id, asset="WGT", side="buy", qty=args.qty,
                                  price=price))
        entries = me.wait(nonce)
        seqs = me.prove(nonce, entries)
        after = next(a["balance"] for a in me.observe()["accounts"] if a["asset"] == "WGT")
        print(f"bought {after - before} WGT at up to {price} CRD: entries {seqs} "
              f"({', '.join(e['kind'] for e in entries)}) proven against the signed checkpoint")
        return 0 if after > before else 1
    except ClientError as e:
        print(f"remote_agent: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
