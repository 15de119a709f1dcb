"""make demo: build the bundled order book and show where its memory goes."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import memlens  # noqa: E402
import orderbook  # noqa: E402


def mib(n):
    return f"{n / 2**20:.1f} MiB"


def main():
    books = orderbook.build(200_000)
    first = next(iter(books.values()))
    order = first.bids[0]

    print("memlens demo: the in-memory state of a small order book service")
    print("=" * 72)
    print(f"sys.getsizeof(order)   = {sys.getsizeof(order):>6} B   (the object header alone)")
    print(f"memlens.sizeof(order)  = {memlens.sizeof(order):>6} B   (with its GC header and attribute storage)")
    print(f"memlens.deep_size(order) = {memlens.deep_size(order):>4} B   (plus the int/float/str objects it owns)")
    print()
    t0 = time.perf_counter()
    st = memlens.deep_size(books, stats=True)
    dt = time.perf_counter() - t0
    print(f"memlens.deep_size(books) = {mib(st.bytes)} in {st.count:,} objects "
          f"(walked in {dt * 1e3:.0f} ms, {dt * 1e9 / st.count:.0f} ns/object)")
    print()
    print("Where it goes, by type (memlens.size_by_type):")
    for row in memlens.size_by_type(books)[:6]:
        print(f"  {row.name:<22} {row.count:>9,} objects {mib(row.bytes):>10}")
    print()
    print("One book, two levels deep (memlens.breakdown):")
    print(memlens.breakdown(first, depth=2, limit=4))
    print()
    print("Reading the table: 'own' is the object itself, 'deep' adds everything")
    print("it holds; each object is counted once, under the first path that")
    print("reached it.  Orders hold 7 boxed values and a dict/values array each --")
    print("see `memlens advise` (when available) for what a compact class would save.")


if __name__ == "__main__":
    main()
