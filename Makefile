# memlens developer tasks.  Everything installs into .venv; nothing global.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# csrc/ and one level of subsystem folders (csrc/heap/, csrc/tracer/ ...).
CSRC_FILES := $(wildcard csrc/*.c csrc/*.h csrc/*/*.c csrc/*/*.h)
CORE_SRC := $(CSRC_FILES) setup.py
ASAN_DIR := build/asan
C_FILES := $(CSRC_FILES) $(wildcard tests/*/ext/*.c)

.PHONY: demo test bench sanitize build clean format format-check

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q --prefer-binary --no-build-isolation -e '.[test]'
	touch $@

# Rebuild the extension in place whenever a C file changes.
src/memlens/.built-$(notdir $(VENV)): $(VENV)/.installed $(CORE_SRC)
	$(PY) setup.py -q build_ext --inplace
	touch $@

build: src/memlens/.built-$(notdir $(VENV))

# The sizing demo, the advisor's playbook (advice applied round by round,
# measured before/after), then `memlens run` on a service with an unbounded
# cache and its HTML report.
demo: build
	$(PY) examples/demo.py
	$(PY) examples/playbook_demo.py build/playbook
	$(VENV)/bin/memlens run -o build/demo.mlcap examples/leaky_service.py
	$(VENV)/bin/memlens report build/demo.mlcap --format html -o build/memlens-demo.html
	@echo "HTML report: $(abspath build/memlens-demo.html)"

test: build
	$(PY) -m pytest -q tests

bench: build
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# ASan + UBSan build of the extension, run against the same tests.  CPython
# itself is not instrumented, so the runtime is preloaded and pymalloc is off
# (PYTHONMALLOC=malloc) so every object allocation goes through ASan.
# allocator_may_return_null: an impossible request fails with NULL, as with
# glibc, instead of aborting (tests exercise the failed-realloc path).
sanitize: $(VENV)/.installed
	rm -rf $(ASAN_DIR)
	MEMLENS_SANITIZE=1 $(PY) setup.py -q build --build-base $(ASAN_DIR) --build-lib $(ASAN_DIR)/lib
	PYTHONPATH=$(ASAN_DIR)/lib PYTHONMALLOC=malloc \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  MEMLENS_SANITIZED=1 \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  $(PY) -m pytest -q -p no:cacheprovider tests

clean:
	rm -rf build $(VENV) .venv-* src/memlens/*.so src/memlens/.built-* src/*.egg-info

# The C sources follow .clang-format (Debian: apt-get install clang-format).
format:
	clang-format -i $(C_FILES)

format-check:
	@clang-format --dry-run --Werror $(C_FILES) && echo "C sources follow .clang-format"
