/* symtab: the name of one of this program's functions, read from its own
 * ELF symbol table (/proc/self/exe), so that the trace can say which
 * callback ran ("on_readable") and which function a coroutine runs
 * without every stage naming its callbacks by hand.
 *
 * The table is read once, on first use (only when tracing is on or a task
 * list is printed), and kept. Static functions are found too: the .symtab
 * section lists them unless the binary was stripped (make never strips).
 * A compiler's clone of a function ("on_readable.isra.0") is named after
 * the function. Thread-safe. */
#ifndef COMMON_SYMTAB_H
#define COMMON_SYMTAB_H

#include <stdint.h>

/* The name of the function of this program that contains addr, or NULL:
 * an address in a shared library (libc, libcurl), a stripped binary, or
 * no /proc. The string lives as long as the process. */
const char *symtab_name(uintptr_t addr);

#endif
