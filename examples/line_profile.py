"""A memory_profiler-style script: run it with

    memlens run --lines examples/line_profile.py
    python -m memory_profiler examples/line_profile.py     # to compare

`profile` is the builtin both runners provide.
"""
import json


def load(n):
    return [json.dumps({"id": i, "name": f"user{i}"}) for i in range(n)]


@profile  # noqa: F821
def main():
    a = [0] * 5_000_000
    b = bytes(10_000_000); del b
    rows = load(50_000)
    names = []
    for row in rows:
        names.append(json.loads(row)["name"])
    del a
    return names


if __name__ == "__main__":
    main()
