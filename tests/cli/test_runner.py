"""memlens._runner: the one "run a script as python would" behind
`memlens run`, `memlens run --lines`, `memlens advise` and
`python -m memlens.lineprof`."""

import json

import pytest

WHO = """\
import json, sys
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__,
                  "file": __file__, "main": sys.modules["__main__"].__dict__ is globals()}))
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""

# Runs the program given on its command line through the runner, in a
# fresh interpreter (the runner changes sys.argv, sys.path and __main__).
DRIVER = """\
import sys
from memlens import _runner
program = _runner.Program(script=sys.argv[1], args=sys.argv[2:])
program.check()
program.enter()
assert program.compile()
ended = program.run()
_runner.report_end(ended)
sys.exit(ended.code)
"""


@pytest.fixture
def scripts(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "who.py").write_text(WHO)
    (tmp_path / "driver.py").write_text(DRIVER)
    return tmp_path


@pytest.mark.parametrize("exit_code", ["0", "3"])
def test_program_sees_what_python_gives_it(scripts, exit_code, run_python):
    # GIVEN a script that prints its argv, sys.path[0], __name__, __file__
    # WHEN it runs under python and through the runner, from its parent dir
    plain = run_python("sub/who.py", exit_code, "--flag", cwd=scripts)
    ours = run_python("driver.py", "sub/who.py", exit_code, "--flag", cwd=scripts)
    # THEN it sees the same, and ends with the same exit code
    assert plain.returncode == ours.returncode == int(exit_code), ours.stderr
    seen = json.loads(ours.stdout)
    assert seen == json.loads(plain.stdout)
    assert seen["argv"] == ["sub/who.py", exit_code, "--flag"]
    assert seen["path0"] == str(scripts / "sub") and seen["name"] == "__main__" and seen["main"]


def test_uncaught_exception_and_exit_message_as_python(scripts, run_python):
    (scripts / "boom.py").write_text("def f():\n    raise ValueError('boom')\nf()\n")
    (scripts / "msg.py").write_text("import sys\nsys.exit('bye')\n")
    for name in ("boom.py", "msg.py"):
        plain = run_python(name, cwd=scripts)
        ours = run_python("driver.py", name, cwd=scripts)
        assert ours.returncode == plain.returncode == 1
        # the traceback shows the program's frames only, like python's
        assert ours.stderr == plain.stderr


def test_lineprof_module_uses_the_same_runner(scripts, run_python):
    # `python -m memlens.lineprof` gives the script python's sys.path[0]
    # (the script's directory) and its exit code.
    plain = run_python("sub/who.py", "4", cwd=scripts)
    ours = run_python("-m", "memlens.lineprof", "sub/who.py", "4", cwd=scripts)
    assert ours.returncode == plain.returncode == 4, ours.stderr
    assert json.loads(ours.stdout) == json.loads(plain.stdout)


def test_missing_program_is_a_program_error(tmp_path, monkeypatch):
    from memlens import _runner

    monkeypatch.chdir(tmp_path)
    with pytest.raises(_runner.ProgramError, match=r"^can't open file 'nope\.py': No such file or directory$"):
        _runner.Program(script="nope.py").check()
    with pytest.raises(_runner.ProgramError, match=r"^No module named 'no_such_pkg_zz'$"):
        _runner.Program(module="no_such_pkg_zz.sub").check()
