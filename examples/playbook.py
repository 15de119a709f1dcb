"""A page-analytics job that uses every technique of the memory playbook
badly (see examples/playbook_demo.py, `make demo`):

* 200,000 visits as a plain @dataclass (``__slots__``: slots=True);
* their durations in a list of floats (a compact ``array``);
* a module-level thumbnail cache that alone keeps most thumbnails alive
  (weak references);
* a total computed from a materialized list comprehension (a generator);
* a checksum loop that copies its buffer on every pass (a memoryview).
"""
from dataclasses import dataclass


@dataclass
class Visit:
    user: int
    page: int
    duration: float


class Thumbnail:
    def __init__(self, page):
        self.page = page
        self.pixels = bytes(40_000)


THUMBNAIL_CACHE = {}


def thumbnail(page):
    thumb = THUMBNAIL_CACHE.get(page)
    if thumb is None:
        thumb = THUMBNAIL_CACHE[page] = Thumbnail(page)
    return thumb


def checksum(size):
    data = bytes(size)
    total = 0
    while data:
        total += data[0] + len(data) % 7
        data = data[250_000:]
    return total


visits = [Visit(1000 + i % 5000, i % 300, i * 0.25) for i in range(200_000)]
durations = [v.duration * 1.5 for v in visits]
front_page = [thumbnail(p) for p in range(0, 300, 30)]
for v in visits[:3000]:
    thumbnail(v.page)
weighted = sum([v.duration * v.page for v in visits])
print(f"{len(visits):,} visits, weighted time {weighted:,.0f}, checksum {checksum(2_500_000)}, "
      f"{len(front_page)} thumbnails on the front page")
