/* Board interface used by common/main.c: QEMU's mps2-an500 (Cortex-M7), output and exit status
 * through Arm semihosting. */
#ifndef TINYARCH_BOARD_H
#define TINYARCH_BOARD_H

#include <stdint.h>

#define BOARD_NAME "mps2-an500"
#define BOARD_HAS_CYCLES 0 /* QEMU models no DWT cycle counter; count instructions with the plugin */

void board_init(void);
void board_print(const char *s);
void board_exit(int status) __attribute__((noreturn));

static inline uint32_t board_cycles(void) { return 0u; }

#endif
