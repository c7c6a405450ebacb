"""A limit order book: price–time priority, FIFO within a price level.

Pure data structure (no money, no events): the exchange mechism in `exchange.py` decides
what trades and settles it. Bids are kept best-first by storing negated prices.

Invariants (checked by `check` and the tests): every resting order is in exactly one
level; levels hold only live orders; while trading is continuous the book is never
crossed (best bid < best ask).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from sortedcontainers import SortedDict

BUY, SELL = "buy", "sell"


@dataclass(slots=True, eq=False)  # identity: removing an order from a level is a pointer scan
class Order:
    id: int
    agent: int
    asset: str
    side: str
    price: int  # quote minor units per unit of the asset
    qty: int  # as placed
    remaining: int
    hold: tuple[int, int] | None  # the ledger hold reserving what the resting part needs
    tick: int


class Book:
    __slots__ = ("bids", "asks")

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()  # -price -> deque[Order]
        self.asks: SortedDict = SortedDict()  # price -> deque[Order]

    def add(self, o: Order) -> None:
        side, key = (self.bids, -o.price) if o.side == BUY else (self.asks, o.price)
        level = side.get(key)
        if level is None:
            side[key] = level = deque()
        level.append(o)

    def remove(self, o: Order) -> None:
        side, key = (self.bids, -o.price) if o.side == BUY else (self.asks, o.price)
        level = side[key]
        level.remove(o)
        if not level:
            del side[key]

    def best(self, side: str) -> Order | None:
        book = self.bids if side == BUY else self.asks
        if not book:
            return None
        return book.peekitem(0)[1][0]

    def best_price(self, side: str) -> int | None:
        o = self.best(side)
        return None if o is None else o.price

    def depth(self, side: str, price: int) -> int:
        book = self.bids if side == BUY else self.asks
        level = book.get(-price if side == BUY else price)
        return sum(o.remaining for o in level) if level else 0

    def orders(self, side: str) -> Iterator[Order]:
        """Resting orders of a side in priority order (best price, then oldest)."""
        book = self.bids if side == BUY else self.asks
        for level in book.values():
            yield from level

    def crossed(self) -> bool:
        b, a = self.best_price(BUY), self.best_price(SELL)
        return b is not None and a is not None and b >= a

    def check(self, *, continuous: bool) -> None:
        for side, book, sign in ((BUY, self.bids, -1), (SELL, self.asks, 1)):
            for key, level in book.items():
                assert level, "no empty levels"
                for o in level:
                    assert o.side == side and o.price == sign * key and o.remaining > 0
        if continuous:
            assert not self.crossed(), "the book is crossed"
