"""An agent in its own process, acting on a live sandbox only through its HTTP API.

    SANDBANK_OPERATOR_TOKEN=... sandbank serve --tick-seconds 0.5 &
    python examples/remote_agent.py --url http://127.0.0.1:8000 --operator-token ...

It has an owner admitted (with the operator's token: a demo shortcut), joins under that owner
with a key that never leaves this process, opens its accounts, announces itself to everyone,
and then checks — against the operator's signed checkpoints — that its actions are in the log.
"""

from __future__ import annotations

import argparse
import time

import httpx

from sandbank.client import Client
from sandbank.identity.keys import SigningKey
from sandbank.kernel.schema import DEBITS_MUST_NOT_EXCEED_CREDITS, OpenAccount
from sandbank.markets.messaging import SendMessage


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--operator-token", required=True)
    ap.add_argument("--name", default="remote-1")
    args = ap.parse_args()
    owner_key = SigningKey.generate()
    r = httpx.post(f"{args.url}/v1/owners", headers={"Authorization": f"Bearer {args.operator_token}"},
                   json={"name": f"owner-of-{args.name}", "public_key": owner_key.public.hex(),
                         "evidence": "example"})
    r.raise_for_status()
    time.sleep(2)  # the owner is admitted at the next tick
    client = Client(args.url)
    owner_id = client._get("/v1/owners", params={"public_key": owner_key.public.hex()})["owner"]
    me = client.join(owner=owner_id, name=args.name, owner_key=owner_key)
    print(f"admitted as agent {me.id}")
    opened = [me.act(OpenAccount(actor=me.id, asset=a, flags=DEBITS_MUST_NOT_EXCEED_CREDITS))
              for a in ("CRD", "WGT")]
    hello = me.act(SendMessage(actor=me.id, to=0, content=f"hello from {args.name}"))
    time.sleep(2)
    for nonce in [*opened, hello]:
        print(f"action {nonce} is in the signed log at entries {me.prove(nonce)}")
    print("my accounts:", [(a["asset"], a["balance"]) for a in me.observe()["accounts"]])


if __name__ == "__main__":
    main()
