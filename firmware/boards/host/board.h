/* Board interface used by common/main.c; this one runs the firmware as a host program. */
#ifndef TINYARCH_BOARD_H
#define TINYARCH_BOARD_H

#include <stdint.h>

#define BOARD_NAME "host"
#define BOARD_HAS_CYCLES 0 /* a host has no meaningful core cycle count */

void board_init(void);
void board_print(const char *s);
void board_exit(int status) __attribute__((noreturn));

static inline uint32_t board_cycles(void) { return 0u; }

#endif
