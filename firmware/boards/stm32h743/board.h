/* Board interface used by common/main.c: STM32H743 (Nucleo-H743ZI), output on USART3 (the
 * ST-LINK virtual COM port, 115200 8N1), cycle counts from the Cortex-M7 DWT. */
#ifndef TINYARCH_BOARD_H
#define TINYARCH_BOARD_H

#include <stdint.h>

/* The core clock, from `make BOARD=stm32h743 CLOCK_MHZ=...` (board.mk passes -DBOARD_CLOCK_MHZ):
 *   480  PLL1 from HSI, VOS0, the part's maximum (rev V silicon; rev Y falls back to 400, see board.c)
 *   400  PLL1 from HSI, VOS1, rev Y's maximum
 *   64   the reset clock, HSI without the PLL */
#ifndef BOARD_CLOCK_MHZ
#define BOARD_CLOCK_MHZ 480
#endif
#if BOARD_CLOCK_MHZ != 480 && BOARD_CLOCK_MHZ != 400 && BOARD_CLOCK_MHZ != 64
#error "BOARD_CLOCK_MHZ (make CLOCK_MHZ=...) must be 480, 400 or 64"
#endif

#define BOARD_NAME "stm32h743"
#define BOARD_HAS_CYCLES 1
/* The clock the build asks for; board_init prints the one it reached as `clock <Hz>`. */
#define BOARD_CPU_HZ ((uint32_t)BOARD_CLOCK_MHZ * 1000000u)

void board_init(void);
void board_print(const char *s);
void board_exit(int status) __attribute__((noreturn));

/* DWT->CYCCNT, enabled by board_init; wraps after 2^32 cycles (8.9 s at 480 MHz, 67 s at 64 MHz). */
static inline uint32_t board_cycles(void) { return *(volatile uint32_t *)0xE0001004u; }

#endif
