/* Board interface used by common/main.c: STM32H743 (Nucleo-H743ZI), output on USART3 (the
 * ST-LINK virtual COM port, 115200 8N1), cycle counts from the Cortex-M7 DWT. */
#ifndef TINYARCH_BOARD_H
#define TINYARCH_BOARD_H

#include <stdint.h>

#define BOARD_NAME "stm32h743"
#define BOARD_HAS_CYCLES 1
#define BOARD_CPU_HZ 64000000u /* reset clock: HSI 64 MHz, no PLL (see board.c) */

void board_init(void);
void board_print(const char *s);
void board_exit(int status) __attribute__((noreturn));

/* DWT->CYCCNT, enabled by board_init; wraps after 2^32 cycles (67 s at 64 MHz). */
static inline uint32_t board_cycles(void) { return *(volatile uint32_t *)0xE0001004u; }

#endif
