"""`memlens run` ends the program as python would, whatever state the
program leaves the interpreter in, and still writes its capture."""
import signal

import pytest

from memlens.report import model


def both(run_python, run_memlens, tmp_path, script, *args):
    """(plain python, memlens run) on the same script, from tmp_path."""
    plain = run_python(script, *args, cwd=tmp_path)
    ours = run_memlens("run", "-q", "-o", "c.mlcap", script, *args, cwd=tmp_path)
    return plain, ours


def test_an_excepthook_that_raises(tmp_path, run_python, run_memlens, write):
    # GIVEN a program whose sys.excepthook raises, and that fails
    write(tmp_path / "p.py", """\
        import sys
        def hook(*a):
            raise RuntimeError("in the hook")
        sys.excepthook = hook
        keep = [bytearray(1000) for _ in range(100)]
        raise ValueError("the program's own")
    """)
    plain, ours = both(run_python, run_memlens, tmp_path, "p.py")
    # THEN both report the hook's error and the original exception, exit 1,
    # and the capture is written
    assert plain.returncode == ours.returncode == 1
    for out in (plain.stderr, ours.stderr):
        assert "Error in sys.excepthook:" in out and "RuntimeError: in the hook" in out
        assert "Original exception was:" in out and "ValueError: the program's own" in out
    assert model.load(tmp_path / "c.mlcap").view_total("leaks") >= 100 * 1000


@pytest.mark.parametrize("body", ["sys.stderr.close()", "sys.stderr = None"])
def test_a_closed_or_missing_stderr(tmp_path, run_python, run_memlens, write, body):
    write(tmp_path / "p.py", f"import sys\nkeep = [1] * 1000\n{body}\n")
    plain = run_python("p.py", cwd=tmp_path)
    ours = run_memlens("run", "-o", "c.mlcap", "p.py", cwd=tmp_path)
    assert plain.returncode == ours.returncode == 0, ours.stderr
    # memlens' own summary still reaches fd 2
    assert "Peak traced memory" in ours.stderr
    assert model.load(tmp_path / "c.mlcap").meta["exit_code"] == "0"


@pytest.mark.parametrize("code", ["2**100", "-(2**100)", "-1", "256 + 3", "True"])
def test_exit_codes_python_would_give(tmp_path, run_python, run_memlens, write, code):
    write(tmp_path / "p.py", f"import sys\nsys.exit({code})\n")
    plain, ours = both(run_python, run_memlens, tmp_path, "p.py")
    assert ours.returncode == plain.returncode, (ours.stderr, plain.stderr)


def test_a_replaced_os_getpid_keeps_the_capture(tmp_path, run_memlens, write):
    write(tmp_path / "p.py", "import os\nos.getpid = lambda: 1\nkeep = [bytearray(100) for _ in range(50)]\n")
    r = run_memlens("run", "-q", "-o", "c.mlcap", "p.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert model.load(tmp_path / "c.mlcap").view_total("leaks") >= 50 * 100


def test_refuses_to_write_the_capture_over_the_script(tmp_path, run_memlens, write):
    script = write(tmp_path / "app.py", "print('hello')\n")
    before = script.read_bytes()
    r = run_memlens("run", "-o", "app.py", "app.py", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "over the program itself" in r.stderr
    assert script.read_bytes() == before
    # also through another path to the same file
    (tmp_path / "sub").mkdir()
    r = run_memlens("run", "-o", "../app.py", "../app.py", cwd=tmp_path / "sub")
    assert r.returncode == 2 and script.read_bytes() == before


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_fatal_signal_writes_the_capture_then_ends_by_it(tmp_path, run_python, run_memlens, write, signame):
    # GIVEN a program that is sent SIGTERM/SIGHUP (no handler of its own)
    write(tmp_path / "p.py", f"""\
        import os, signal, time
        keep = [bytearray(1000) for _ in range(2000)]
        os.kill(os.getpid(), signal.{signame})
        time.sleep(10)
        print("not reached")
    """)
    plain, ours = both(run_python, run_memlens, tmp_path, "p.py")
    signum = getattr(signal, signame)
    # THEN it dies by that signal as under python, not reaching its end
    assert plain.returncode == ours.returncode == -signum
    assert "not reached" not in ours.stdout
    # AND the capture holds what it had allocated, with the exit status
    # the shell would show
    cap = model.load(tmp_path / "c.mlcap")
    assert cap.view_total("leaks") >= 2000 * 1000
    assert cap.meta["exit_code"] == str(128 + signum)
    assert f"memlens run: {signame}: capture written" in ours.stderr


def test_a_program_handler_for_sigterm_is_the_programs(tmp_path, run_python, run_memlens, write):
    write(tmp_path / "p.py", """\
        import os, signal, sys
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))
        os.kill(os.getpid(), signal.SIGTERM)
    """)
    plain, ours = both(run_python, run_memlens, tmp_path, "p.py")
    assert plain.returncode == ours.returncode == 7
    assert model.load(tmp_path / "c.mlcap").meta["exit_code"] == "7"


def test_the_command_imports_only_the_engine_before_its_main(run_ok):
    # GIVEN the console script's first step (`from memlens.__main__ import
    # main`): a Ctrl-C that lands before main() runs is a traceback
    out = run_ok("""\
        import sys
        before = set(sys.modules)
        from memlens.__main__ import main
        print(sorted(set(sys.modules) - before))
    """)
    # THEN that step loads the C engine and nothing else (argparse, the CLI,
    # the tracer API are all imported inside main())
    assert out.strip() == "['memlens', 'memlens.__main__', 'memlens._core']"


@pytest.mark.parametrize("module", ["memlens.cli.run", "memlens.tracer", "memlens._runner"])
def test_ctrl_c_during_the_commands_own_imports_is_one_line(tmp_path, run_code, write, module):
    # GIVEN Ctrl-C arriving while main() imports one of its modules (a
    # finder raises KeyboardInterrupt there, as SIGINT's handler would)
    write(tmp_path / "app.py", "print('ran')\n")
    r = run_code(f"""\
        import sys
        class Interrupt:
            def find_spec(self, name, path=None, target=None):
                if name == {module!r}:
                    raise KeyboardInterrupt
        sys.meta_path.insert(0, Interrupt())
        from memlens.__main__ import main
        sys.exit(main(["run", "-q", "-o", "c.mlcap", "app.py"]))
    """, cwd=tmp_path)
    # THEN one line and python's exit code for SIGINT; the program never ran
    assert r.returncode == 130, r.stderr
    assert r.stderr.endswith(": interrupted\n") and r.stderr.count("\n") == 1, r.stderr
    assert "ran" not in r.stdout
