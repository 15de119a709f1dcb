"""A small order book service's in-memory state -- the bundled example.

It keeps every order as a plain Python object, the way most code starts
out: a __dict__-backed instance per order, a boxed int or float per numeric
field, the same venue and currency strings repeated in every order, and a
price history as a list of floats.  Run it directly to build the book and
print where its memory goes:

    python examples/orderbook.py [n_orders]
"""
import random
import sys


class Order:
    def __init__(self, order_id, side, price, quantity, venue, currency, ts):
        self.order_id = order_id
        self.side = side
        self.price = price
        self.quantity = quantity
        self.venue = venue
        self.currency = currency
        self.timestamp = ts


class Book:
    def __init__(self, symbol):
        self.symbol = symbol
        self.bids = []
        self.asks = []
        self.by_id = {}
        self.price_history = []

    def add(self, order):
        (self.bids if order.side == "buy" else self.asks).append(order)
        self.by_id[order.order_id] = order
        self.price_history.append(order.price)


VENUES = ["XNYS", "XNAS", "BATS", "IEXG"]


def build(n_orders=200_000, seed=7):
    rng = random.Random(seed)
    books = {}
    for i in range(n_orders):
        symbol = f"SYM{rng.randrange(50):02d}"
        book = books.get(symbol)
        if book is None:
            book = books[symbol] = Book(symbol)
        # Strings read from a feed arrive as fresh objects, never shared:
        venue = "".join(rng.choice(VENUES))  # an equal copy per order
        currency = "-".join(["USD", "cash"])
        book.add(Order(1_000_000 + i, "buy" if i % 2 else "sell",
                       round(rng.uniform(10, 500), 2), rng.randrange(1, 1000) * 100,
                       venue, currency, 1_700_000_000.0 + i * 0.001))
    return books


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    books = build(n)
    total = sum(len(b.by_id) for b in books.values())
    print(f"built {len(books)} books holding {total:,} orders")
