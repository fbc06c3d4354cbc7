/* What the fixed C of engine/native/ exports: the functions engine/batch/native_text.py
 * and tests/engine/test_numeric_c.py find with ctypes in the extension's shared library.
 * Marked visible by name, since a build may hide every symbol but the module's init. */
#ifndef TANPU_EXPORT_H
#define TANPU_EXPORT_H
#if defined(_WIN32)
#define TANPU_EXPORT __declspec(dllexport)
#else
#define TANPU_EXPORT __attribute__((visibility("default")))
#endif
#endif
