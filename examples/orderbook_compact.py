"""The bundled order book after following `memlens advise`:

- Order becomes a memlens.Record: its numbers are stored unboxed inside the
  instance, no per-instance dict (the `record` advice);
- venue and currency strings are interned: one object per distinct value
  (the two `intern` advices).

Everything else -- the Book class, the feed, the random data -- is the same
as examples/orderbook.py, so the two can be compared byte for byte.
"""
import random
import sys

import memlens
from orderbook import VENUES, Book


class Order(memlens.Record):
    order_id: int
    side: str
    price: float
    quantity: int
    venue: str
    currency: str
    timestamp: float


def build(n_orders=200_000, seed=7):
    rng = random.Random(seed)
    books = {}
    for i in range(n_orders):
        symbol = f"SYM{rng.randrange(50):02d}"
        book = books.get(symbol)
        if book is None:
            book = books[symbol] = Book(symbol)
        venue = sys.intern("".join(rng.choice(VENUES)))
        currency = sys.intern("-".join(["USD", "cash"]))
        book.add(Order(1_000_000 + i, "buy" if i % 2 else "sell",
                       round(rng.uniform(10, 500), 2), rng.randrange(1, 1000) * 100,
                       venue, currency, 1_700_000_000.0 + i * 0.001))
    return books
