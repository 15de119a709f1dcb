"""Follow memlens's advice on the bundled order book and measure the result.

    python examples/advise_demo.py

Builds the order book as written (examples/orderbook.py), prints what
`memlens.advise()` suggests, then builds it again as rewritten by following
that advice (examples/orderbook_compact.py) and compares both with
tracemalloc, the independent ground truth.
"""
import gc
import os
import sys
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import memlens  # noqa: E402
import orderbook  # noqa: E402
import orderbook_compact  # noqa: E402

N = 200_000


def traced(build):
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        books = build(N)
        return books, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def main():
    books, before = traced(orderbook.build)
    advice = memlens.advise()
    print(memlens.format_advice(advice))
    predicted = sum(a.saving for a in advice
                    if a.kind in ("record", "intern") and not a.blockers)
    del books
    compact, after = traced(orderbook_compact.build)
    print(f"order book as written:        {before / 2**20:6.1f} MiB (tracemalloc)")
    print(f"after the record+intern advice: {after / 2**20:6.1f} MiB (tracemalloc)")
    print(f"saved {100 * (before - after) / before:.0f}%: {(before - after) / 2**20:.1f} MiB measured, "
          f"{predicted / 2**20:.1f} MiB predicted by memlens.advise")
    del compact


if __name__ == "__main__":
    main()
