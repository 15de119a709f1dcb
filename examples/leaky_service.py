"""A small request-handling service with a real memory problem.

It serves "user profile" lookups.  To be fast it memoises rendered
responses in a module-level cache keyed by the full request, including a
per-request trace id -- so no two keys are ever equal, every response is
kept forever, and memory grows with the number of requests (an unbounded
cache).  It also builds a large temporary report once, which makes the
peak higher than what stays allocated, and keeps an audit log of every
request in an in-memory sqlite database (native memory: sqlite's pages).

    memlens run examples/leaky_service.py        (make demo does this)
"""
import json
import random
import sqlite3
import sys
import uuid


class Profile:
    def __init__(self, user_id, rng):
        self.user_id = user_id
        self.name = f"user-{user_id}"
        self.email = f"user{user_id}@example.com"
        self.friends = [rng.randrange(100_000) for _ in range(rng.randrange(5, 40))]


_PROFILES = {}
_RESPONSE_CACHE = {}  # the bug: keyed by (user, trace id), never evicted


def load_profile(user_id, rng):
    profile = _PROFILES.get(user_id)
    if profile is None:
        profile = _PROFILES[user_id] = Profile(user_id, rng)
    return profile


def render(profile):
    return json.dumps({"id": profile.user_id, "name": profile.name, "email": profile.email,
                       "friends": profile.friends}).encode()


def handle(request, rng):
    key = (request["user"], request["trace_id"])
    cached = _RESPONSE_CACHE.get(key)
    if cached is not None:
        return cached
    body = render(load_profile(request["user"], rng))
    _RESPONSE_CACHE[key] = body
    return body


def nightly_report(n):
    # A big temporary structure: freed when the function returns.
    rows = [{"user": i, "score": i * 0.5, "label": str(i)} for i in range(n)]
    return sum(r["score"] for r in rows)


def main(requests=60_000):
    rng = random.Random(42)
    served = 0
    for i in range(requests):
        req = {"user": rng.randrange(2_000), "trace_id": uuid.UUID(int=rng.getrandbits(128)).hex}
        served += len(handle(req, rng))
        audit(req)
        if i == requests // 2:
            nightly_report(100_000)
    print(f"served {requests} requests, {served / 1e6:.1f} MB of responses; "
          f"{len(_RESPONSE_CACHE)} cached responses for {len(_PROFILES)} users")


# An audit log kept in an in-memory sqlite database: sqlite's pages are C
# memory (malloc), which memlens traces too and puts on this line.
_AUDIT = sqlite3.connect(":memory:")
_AUDIT.execute("create table audit (trace_id text, user integer)")


def audit(request):
    _AUDIT.execute("insert into audit values (?, ?)", (request["trace_id"], request["user"]))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60_000)
