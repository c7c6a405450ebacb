"""Run by test_crash: writes ticks to a log until it is killed (or resumes one).

`new <tests dir> trap`: after 8 ticks of the loop, the writer stops inside the database
transaction of the next tick — its entries inserted, its checkpoint not yet — says
`mid-tick <tick>` and waits there to be killed, so the kill lands mid-tick every time."""

import sys
import time

import sandbank.economy
from sandbank.kernel.schema import Transfer, TransferSpec
from sandbank.store.sqlite import SQLiteStore

sys.path.insert(0, sys.argv[3])
sys.path.insert(0, sys.argv[3] + "/..")  # the repository, for tests.keys
from conftest import Economy  # noqa: E402
from tests.keys import fixed_key  # noqa: E402

path, mode = sys.argv[1], sys.argv[2]
op = fixed_key(1, "operator")
if mode == "new":
    e = Economy(n=50, fund=10**9, store=SQLiteStore(path))
    k = e.k
else:
    k = sandbank.economy.resume(SQLiteStore(path), op)
if mode == "new" and sys.argv[4:5] == ["trap"]:
    inserts = {"n": 0}

    def trap(statement: str) -> None:
        if statement.startswith("INSERT INTO checkpoints"):
            inserts["n"] += 1
            if inserts["n"] == 9:
                print(f"mid-tick {k.tick}", flush=True)
                time.sleep(600)

    k.store.connection.set_trace_callback(trap)
accounts = [a.id for a in k.state.ledger.accounts.values() if not a.treasury]
next_id = 10**6 + k.tick * 10**4
while True:
    for i in range(2000):  # a heavy tick, so the kill often lands inside one
        src, dst = accounts[i % 50], accounts[(i * 7 + 3) % 50]
        if src != dst:
            next_id += 1
            k.submit(Transfer(actor=k.state.ledger.accounts[src].holder,
                              transfers=[TransferSpec(id=next_id, debit=src, credit=dst, amount=1)]))
    s = k.step()
    print(f"committed {s.tick}", flush=True)
    if mode == "resume" and s.tick >= int(sys.argv[4]):
        break
