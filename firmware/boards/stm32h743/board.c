/* STM32H743 (Nucleo-H743ZI): startup, USART3 console and DWT cycle counter, registers only.
 *
 * Clock: left at the reset configuration, the 64 MHz HSI drives the core, AXI, AHB and APB
 * buses directly (no PLL, all prescalers 1, flash at its reset latency of 7 wait states,
 * voltage scale 3). Cycle counts therefore measure the core at 64 MHz with flash wait states;
 * the L1 instruction and data caches are enabled below, which hides most of them.
 * Memory: code and const weights in flash (0x08000000), .data/.bss (the arena) in AXI SRAM
 * (0x24000000), the stack in DTCM (0x20000000); see stm32h743.ld.
 * Console: USART3 on PD8 (TX) / PD9 (RX), alternate function 7, which the Nucleo-144 board
 * wires to the ST-LINK virtual COM port; 115200 baud 8N1 from the 64 MHz PCLK1 kernel clock.
 */
#include <stdint.h>

#include "board.h"

extern uint32_t _estack;

#define REG(addr) (*(volatile uint32_t *)(addr))

/* RCC (RM0433 section 8) */
#define RCC_BASE 0x58024400u
#define RCC_AHB4ENR REG(RCC_BASE + 0x0E0u)
#define RCC_APB1LENR REG(RCC_BASE + 0x0E8u)
#define RCC_AHB4ENR_GPIODEN (1u << 3)
#define RCC_APB1LENR_USART3EN (1u << 18)

/* GPIOD (RM0433 section 11) */
#define GPIOD_BASE 0x58020C00u
#define GPIOD_MODER REG(GPIOD_BASE + 0x00u)
#define GPIOD_OSPEEDR REG(GPIOD_BASE + 0x08u)
#define GPIOD_PUPDR REG(GPIOD_BASE + 0x0Cu)
#define GPIOD_AFRH REG(GPIOD_BASE + 0x24u)

/* USART3 (RM0433 section 48) */
#define USART3_BASE 0x40004800u
#define USART3_CR1 REG(USART3_BASE + 0x00u)
#define USART3_CR2 REG(USART3_BASE + 0x04u)
#define USART3_CR3 REG(USART3_BASE + 0x08u)
#define USART3_BRR REG(USART3_BASE + 0x0Cu)
#define USART3_ISR REG(USART3_BASE + 0x1Cu)
#define USART3_TDR REG(USART3_BASE + 0x28u)
#define USART_CR1_UE (1u << 0)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_ISR_TC (1u << 6)
#define USART_ISR_TXE (1u << 7) /* TXFNF when the FIFO is enabled; it is not */

#define UART_KERNEL_HZ 64000000u /* rcc_pclk1 = HSI 64 MHz at reset (USART234578SEL = 0) */
#define UART_BAUD 115200u

/* Cortex-M7 system control block, debug and DWT (ARMv7-M ARM) */
#define SCB_CPACR REG(0xE000ED88u)
#define SCB_CCR REG(0xE000ED14u)
#define SCB_CCSIDR REG(0xE000ED80u)
#define SCB_CSSELR REG(0xE000ED84u)
#define SCB_ICIALLU REG(0xE000EF50u)
#define SCB_DCISW REG(0xE000EF60u)
#define SCB_CCR_DC (1u << 16)
#define SCB_CCR_IC (1u << 17)
#define DEMCR REG(0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)
#define DWT_LAR REG(0xE0001FB0u)
#define DWT_CTRL_CYCCNTENA (1u << 0)

static inline void dsb(void) { __asm__ volatile("dsb 0xF" ::: "memory"); }
static inline void isb(void) { __asm__ volatile("isb 0xF" ::: "memory"); }

/* Invalidate, then enable, the L1 caches (the sequence of CMSIS SCB_EnableICache/DCache). */
static void enable_caches(void) {
    dsb();
    isb();
    SCB_ICIALLU = 0u;
    dsb();
    isb();
    SCB_CCR |= SCB_CCR_IC;
    dsb();
    isb();

    SCB_CSSELR = 0u; /* level 1 data cache */
    dsb();
    uint32_t ccsidr = SCB_CCSIDR;
    uint32_t sets = (ccsidr >> 13) & 0x7FFFu;
    do {
        uint32_t ways = (ccsidr >> 3) & 0x3FFu;
        do {
            SCB_DCISW = ((sets << 5) & 0x3FE0u) | ((ways << 30) & 0xC0000000u);
        } while (ways-- != 0u);
    } while (sets-- != 0u);
    dsb();
    SCB_CCR |= SCB_CCR_DC;
    dsb();
    isb();
}

static void uart_init(void) {
    RCC_AHB4ENR |= RCC_AHB4ENR_GPIODEN;
    RCC_APB1LENR |= RCC_APB1LENR_USART3EN;
    (void)RCC_APB1LENR; /* read back: the enable takes effect before the peripheral is touched */

    /* PD8, PD9: alternate function 7, high speed, no pull. */
    GPIOD_MODER = (GPIOD_MODER & ~(0xFu << 16)) | (0xAu << 16);
    GPIOD_OSPEEDR |= 0xFu << 16;
    GPIOD_PUPDR &= ~(0xFu << 16);
    GPIOD_AFRH = (GPIOD_AFRH & ~0xFFu) | 0x77u;

    USART3_CR1 = 0u;
    USART3_CR2 = 0u;
    USART3_CR3 = 0u;
    USART3_BRR = (UART_KERNEL_HZ + UART_BAUD / 2u) / UART_BAUD; /* 556: 115108 baud, -0.08 % */
    USART3_CR1 = USART_CR1_TE | USART_CR1_RE | USART_CR1_UE;
}

static void uart_putc(char c) {
    while ((USART3_ISR & USART_ISR_TXE) == 0u) {
    }
    USART3_TDR = (uint8_t)c;
}

void board_init(void) {
    enable_caches();
    uart_init();
    DEMCR |= DEMCR_TRCENA;
    DWT_LAR = 0xC5ACCE55u; /* unlock DWT writes (Cortex-M7) */
    DWT_CYCCNT = 0u;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
}

void board_print(const char *s) {
    for (; *s; ++s) {
        if (*s == '\n') uart_putc('\r');
        uart_putc(*s);
    }
}

/* No host to return to: report the status, let the UART drain, then sleep. */
void board_exit(int status) {
    board_print(status == 0 ? "exit 0\n" : "exit error\n");
    while ((USART3_ISR & USART_ISR_TC) == 0u) {
    }
    for (;;) __asm__ volatile("wfi");
}

void Default_Handler(void) {
    board_print("fault: unexpected exception\n");
    for (;;) {
    }
}

void Reset_Handler(void); /* common/startup_m7.c */

typedef void (*vector_t)(void);

/* 16 system vectors + the STM32H743's 150 interrupts; no interrupt is enabled by this firmware. */
__attribute__((section(".isr_vector"), used)) const vector_t vector_table[16 + 150] = {
    [0] = (vector_t)&_estack,
    [1] = Reset_Handler,
    [2 ... 165] = Default_Handler,
};
