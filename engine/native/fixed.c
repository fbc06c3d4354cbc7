/* engine.native._fixed: the fixed C of the engine (text.c, numeric.c) as an ordinary
 * extension module, so that pip builds it at install time like any other.
 *
 * The module has no Python methods: its functions take raw column pointers and are called
 * through ctypes (engine/native/__init__.py opens this module's own file), which keeps
 * them free of the C API and lets the GIL go while they run. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static struct PyModuleDef fixed_module = {
    PyModuleDef_HEAD_INIT, "_fixed",
    "The engine's fixed C (text readers, numeric contract); called through ctypes.", -1, NULL,
};

PyMODINIT_FUNC PyInit__fixed(void) { return PyModule_Create(&fixed_module); }
