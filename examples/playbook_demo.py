"""Follow memlens's advice on examples/playbook.py, round by round, and
measure each round with tracemalloc.

    python examples/playbook_demo.py [workdir]      (make demo)

Each round runs the program under ``memlens run --advise --diff``, prints
the advice, applies the diff it printed (``patch -p0``), and measures the
program before and after with tracemalloc, the independent ground truth:
its peak and what it still holds at the end.  Advice about the peak is
given for the lines that held memory *at* the peak, so once that line is
fixed the peak moves on, and the next round advises the next line.  Advice
without an edit of the source (record, array) is printed, not applied.
"""
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM = "playbook.py"
MAX_ROUNDS = 4
HEAD = "memlens advise: the edits as a unified diff"
# Runs a program under tracemalloc: its peak and what is traced at its end.
MEASURE = """\
import runpy, sys, tracemalloc
tracemalloc.start()
g = runpy.run_path(sys.argv[1], run_name="__main__")
print(*tracemalloc.get_traced_memory()[::-1])
"""


def mib(n):
    return f"{n / 2**20:.1f} MiB"


def memlens(*args, cwd):
    return subprocess.run([sys.executable, "-m", "memlens", *args], cwd=cwd, capture_output=True,
                          text=True)


def measure(cwd):
    r = subprocess.run([sys.executable, "-c", MEASURE, PROGRAM], cwd=cwd, capture_output=True,
                       text=True, check=True)
    peak, end = map(int, r.stdout.split()[-2:])
    return peak, end


# Advice whose saving lowers the peak (the rest: the heap at the end).
PEAK_KINDS = ("generator", "copy")


def predicted(cwd):
    """(at the end, at the peak) bytes the applied advice predicts, from the
    json report of the round's capture."""
    r = memlens("report", "playbook.mlcap", "--format", "json", cwd=cwd)
    applied = [a for a in json.loads(r.stdout)["advice"] if a["diff"] and not a["blockers"]]
    end = sum(a["saving"] for a in applied if a["kind"] not in PEAK_KINDS)
    return end, sum(a["saving"] for a in applied if a["kind"] in PEAK_KINDS), applied


def main(argv):
    work = os.path.abspath(argv[1] if len(argv) > 1 else os.path.join("build", "playbook"))
    os.makedirs(work, exist_ok=True)
    shutil.copy(os.path.join(HERE, PROGRAM), os.path.join(work, PROGRAM))
    if shutil.which("patch") is None:
        print("playbook_demo: needs the `patch` tool to apply the advice", file=sys.stderr)
        return 1
    first = measure(work)
    for rnd in range(1, MAX_ROUNDS + 1):
        r = memlens("run", "-q", "--advise", "--diff", "-o", "playbook.mlcap", PROGRAM, cwd=work)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        report = r.stderr.split(HEAD)[0].strip()
        print(f"==== round {rnd}: memlens run --advise --diff {PROGRAM}\n{report}\n")
        if HEAD not in r.stderr:
            print(f"round {rnd}: no edit of the source left to apply\n")
            break
        diff = r.stderr.split(HEAD, 1)[1].split("\n", 1)[1]
        before = measure(work)
        with open(os.path.join(work, "advice.patch"), "w") as f:
            f.write(diff)
        subprocess.run(["patch", "-s", "-p0", "-i", "advice.patch"], cwd=work, check=True)
        after = measure(work)
        end, peak, applied = predicted(work)
        print(f"applied (patch -p0):\n{diff}")
        print(f"round {rnd} applied {', '.join(a['kind'] for a in applied)}; predicted: "
              f"{mib(end)} less at the end, and {mib(peak)} less on the peak line(s)")
        print(f"round {rnd} measured (tracemalloc): peak {mib(before[0])} -> {mib(after[0])} "
              f"({mib(before[0] - after[0])} less), at the end {mib(before[1])} -> {mib(after[1])} "
              f"({mib(before[1] - after[1])} less)\n")
    last = measure(work)
    print(f"all rounds: peak {mib(first[0])} -> {mib(last[0])} "
          f"({1 - last[0] / first[0]:.0%} less), at the end {mib(first[1])} -> {mib(last[1])} "
          f"({1 - last[1] / first[1]:.0%} less); the program as advised: {os.path.join(work, PROGRAM)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
