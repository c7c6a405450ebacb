"""A hostile policy: from `act()` it tries to reach the economy and the machine. It records
what it managed in files under `report` (which exists only when it runs in the runner's
process) and raises an error naming every attempt that failed, so a host reports them.

mode: `steal` queues an operator transfer to itself through the runner it finds; `tamper`
also writes balances and another agent's parameters directly; `idle` attacks nothing."""

import gc
import json
import socket
import sys

from sandbank.agents import Agent, policy


@policy("byo_hostile", params={"mode": "steal", "port": 0, "target": "", "amount": 50_000,
                               "secret": ""})
class Hostile(Agent):
    def act(self, obs):
        p = self.params
        if p["mode"] == "idle":
            return []
        failed, done = [], []
        # 1. the kernel and the runner, through the garbage collector and the frames
        found = [o for o in gc.get_objects()
                 if type(o).__name__ in ("Kernel", "LabEconomy")]
        frame = sys._getframe()
        while frame is not None:
            found += [v for v in frame.f_locals.values()
                      if type(v).__name__ in ("Kernel", "LabEconomy")]
            frame = frame.f_back
        econ = next((o for o in found if type(o).__name__ == "LabEconomy"), None)
        if econ is None:
            failed.append("no kernel or runner in reach")
        elif obs.tick % 5 == 0:
            from sandbank.kernel.schema import OPERATOR, Transfer, TransferSpec

            led = econ.k.state.ledger
            mine = led.account_of(self.id, "CRD").id
            econ.submit(Transfer(actor=OPERATOR, transfers=[TransferSpec(
                id=10_000_000 + obs.tick, debit=led.treasury["CRD"], credit=mine,
                amount=p["amount"])]))
            done.append("queued an operator transfer")
            others = [a for a in econ.agents if a.id != self.id]
            if others:
                done.append(f"read agent {others[0].id}'s parameters {sorted(others[0].params)}")
            if p["mode"] == "tamper":
                led.account_of(self.id, "CRD").credits_posted += 1
                if others:
                    others[0].params["max_qty"] = 0
                done.append("edited balances and parameters")
        # 2. the network
        try:
            with socket.create_connection(("127.0.0.1", p["port"]), timeout=1) as s:
                s.sendall(b"exfiltrated")
            done.append("sent to the listener")
        except OSError as e:
            failed.append(f"network: {type(e).__name__}")
        # 3. the disk: the run's key file, and a folder outside its working directory
        loot = "pwned"
        try:
            with open(p["secret"]) as f:
                loot = f.read()
            done.append("read the run key")
        except OSError as e:
            failed.append(f"key: {type(e).__name__}")
        try:
            with open(f"{p['target']}/written-at-{obs.tick}", "w") as f:
                f.write(loot)
            done.append("wrote a file")
        except OSError as e:
            failed.append(f"disk: {type(e).__name__}")
        if failed:
            raise PermissionError("blocked: " + "; ".join(failed))
        return []


@policy("byo_forger", params={"mode": "forge", "victim": 1})
class Forger(Agent):
    """Attacks the host's channel to the runner itself: it finds the host's answer stream
    and writes to it: an answer for an agent of another owner (`forge`), a frame header
    promising 4 GB (`huge`), bytes that are not JSON (`garbage`), JSON nested past any
    decoder's depth (`deep`), many frames each under the size limit (`flood`), empty
    answers from a thread every 0.2 s while `act` never returns, to look alive to a
    watchdog (`trickle`); or it returns an action in another agent's name (`impersonate`),
    raises an exception of a new type each time (`kinds`), or fills /dev and allocates
    past its memory limit (`greedy`)."""

    def act(self, obs):
        import io
        import struct

        from sandbank.markets.exchange import PlaceOrder

        p = self.params
        if p["mode"] == "impersonate":
            return [PlaceOrder(actor=p["victim"], asset="WGT", side="sell", qty=1, price=1)]
        if p["mode"] == "kinds":
            raise type(f"Kind{obs.tick}x{self.id}", (Exception,), {})("a new kind")
        if p["mode"] == "greedy":
            failed = []
            for where in ("/dev/shm/fill", "/dev/fill"):
                try:
                    with open(where, "wb") as f:
                        f.write(b"x" * (1 << 20))
                    failed.append(f"wrote {where}")
                except OSError as e:
                    failed.append(f"{where}: {type(e).__name__}")
            try:
                hog = bytearray(1 << 30)
                failed.append(f"allocated {len(hog) >> 20} MB")
            except MemoryError:
                failed.append("memory: MemoryError")
            raise RuntimeError("; ".join(failed))
        seen, frame = [], sys._getframe()
        while frame is not None:  # up to the host's main loop, which holds the stream
            seen += list(frame.f_locals.values())
            frame = frame.f_back
        stream = next((o for o in seen if isinstance(o, io.FileIO) and o.mode == "wb"
                       and not o.closed), None)
        if stream is None:
            raise LookupError("no answer stream here")
        if p["mode"] == "forge":
            order = {"kind": "place_order", "actor": p["victim"], "asset": "WGT", "side": "sell",
                     "qty": 1, "price": 1}
            body = json.dumps({"answers": [{"agent": p["victim"], "actions": [order]}]}).encode()
            stream.write(struct.pack(">I", len(body)) + body)
        elif p["mode"] == "huge":
            stream.write(struct.pack(">I", 0xFFFFFFF0))
        elif p["mode"] == "garbage":
            stream.write(struct.pack(">I", 5) + b"\x80abcd")
        elif p["mode"] == "flood":  # frames each under the frame limit, without end
            body = json.dumps({"answers": [[] for _ in range(100_000)]}).encode()
            for _ in range(200):
                stream.write(struct.pack(">I", len(body)) + body)
        elif p["mode"] == "deep":
            body = b"[" * 200_000 + b"]" * 200_000
            stream.write(struct.pack(">I", len(body)) + body)
        elif p["mode"] == "trickle":
            import threading
            import time

            def alive() -> None:
                while True:
                    body = b'{"answers": []}'
                    stream.write(struct.pack(">I", len(body)) + body)
                    time.sleep(0.2)

            threading.Thread(target=alive, daemon=True).start()
            import signal

            signal.signal(signal.SIGALRM, signal.SIG_IGN)
            while True:
                time.sleep(1)
        return []
