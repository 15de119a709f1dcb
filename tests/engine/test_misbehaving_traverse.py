"""Extension types whose tp_traverse misbehaves (reports NULL, the same
object many times, references it does not own, or stops with an error
code) must not crash any heap walk: census, retained_size, why_alive,
deep_size, breakdown, advise.  The type is a test-only extension compiled
here, and everything runs in a subprocess so a crash fails one test."""
import os
import subprocess
import sys
import sysconfig

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("badtraverse")
    src = os.path.join(HERE, "ext", "badtraverse.c")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    out = os.path.join(d, "badtraverse" + suffix)
    cc = os.environ.get("CC", "cc")
    include = sysconfig.get_paths()["include"]
    r = subprocess.run([cc, "-shared", "-fPIC", "-O1", "-I", include, src, "-o", out],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("could not build the test extension:\n" + r.stderr)
    return str(d)


SCRIPT = """\
import gc, sys
import memlens
import badtraverse

payload = [float(i) for i in range(1000)]
good = badtraverse.Bad(payload)
early = badtraverse.Bad([2.5] * 10, True)
holder = {"bad": good, "early": early}

c = memlens.census()
assert c.count(badtraverse.Bad) == 2, c.count(badtraverse.Bad)
cr = memlens.census(retained=True)
assert cr.count(badtraverse.Bad) == 2
r = memlens.retained_size(good)
assert r >= memlens.sizeof(good), r
paths = memlens.why_alive(payload)
assert paths is not None
st = memlens.deep_size(holder, stats=True)
assert st.bytes >= memlens.deep_size(payload), (st.bytes, memlens.deep_size(payload))
print(memlens.breakdown(holder, depth=3))
memlens.advise(min_saving=0)
memlens.start()
snap = memlens.take_snapshot()
memlens.stop()
print("ok", st.count, r)
"""


def test_walks_survive_misbehaving_traverse(ext_dir):
    env = dict(os.environ)
    import memlens

    src = os.path.dirname(os.path.dirname(os.path.abspath(memlens.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([ext_dir, src, env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok" in r.stdout
