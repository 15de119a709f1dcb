/* testcore.h: the test-only extension memlens._testcore.
 *
 * Entry points for tests and benchmarks that must not be part of the
 * public engine: raw-allocator calls, the chain-only allocator hooks, the
 * null line handler (testcore_module.c), types whose C code calls back
 * into Python during a heap walk (testcore_sizing.c), direct malloc/mmap
 * calls from this object and from native threads (testcore_native.c), and probes that read CPython's
 * structures through memlens' mirrors of them (testcore_layout.c).  Built
 * by setup.py from this folder only; it includes the engine's headers but
 * links none of its object code (see testapi.h for why).
 */
#ifndef MEMLENS_TESTCORE_H
#define MEMLENS_TESTCORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* testcore_layout.c: add the layout_* probes to `m`. */
int testcore_layout_exec(PyObject *m);

/* testcore_sizing.c: add CallbackSizeof and ObjectBuffer to `m`. */
int testcore_sizing_exec(PyObject *m);

/* testcore_native.c: add the native_* calls (malloc, mmap, native threads). */
int testcore_native_exec(PyObject *m);

#endif /* MEMLENS_TESTCORE_H */
