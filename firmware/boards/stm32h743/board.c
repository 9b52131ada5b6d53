/* STM32H743 (Nucleo-H743ZI): clock tree, USART3 console and DWT cycle counter, registers only.
 *
 * Clock (BOARD_CLOCK_MHZ, from `make CLOCK_MHZ=...`; references are to RM0433 rev 7):
 *   480  HSI 64 MHz / DIVM1 4 = 16 MHz -> PLL1 x DIVN1 60 = 960 MHz VCO (wide range) / DIVP1 2
 *        = 480 MHz core; AXI/AHB 240 MHz (HPRE /2), every APB 120 MHz (/2); voltage scale 0 (VOS1,
 *        then the overdrive, SYSCFG_PWRCR.ODEN); flash 4 wait states, WRHIGHFREQ 2 (table 17).
 *   400  the same with DIVN1 50 (800 MHz VCO): AXI 200 MHz, APB 100 MHz, VOS1, flash 2 wait
 *        states, WRHIGHFREQ 2. Rev Y silicon (DBGMCU_IDC.REV_ID 0x1003) stops here: its wide VCO
 *        ends at 836 MHz and it has no VOS0, so a 480 build runs at 400 MHz on it and says so.
 *   64   the reset clock: HSI drives everything directly, VOS3, flash latency at its reset value.
 * PLL source: the HSI rather than the 8 MHz HSE bypass from the ST-LINK's MCO. The HSI is on and
 * trimmed at reset on every board; the MCO depends on the Nucleo revision, its solder bridges and
 * the ST-LINK firmware. Its tolerance (about 1 %) does not matter to cycle counts or to the UART.
 * Every wait is bounded: if a ready flag never comes, the clock stays at 64 MHz HSI and board_init
 * prints a `warning clock:` line naming the step.
 * Memory: code and const weights in flash (0x08000000), .data/.bss (the arena) in AXI SRAM
 * (0x24000000), the stack in DTCM (0x20000000); see stm32h743.ld. L1 I- and D-caches on.
 * Console: USART3 on PD8 (TX) / PD9 (RX), alternate function 7, which the Nucleo-144 board
 * wires to the ST-LINK virtual COM port; 115200 baud 8N1, BRR from the PCLK1 actually reached.
 */
#include <stdint.h>

#include "board.h"

extern uint32_t _estack;

#define REG(addr) (*(volatile uint32_t *)(addr))

/* RCC (RM0433 chapter 8) */
#define RCC_BASE 0x58024400u
#define RCC_CR REG(RCC_BASE + 0x000u)
#define RCC_CFGR REG(RCC_BASE + 0x010u)
#define RCC_D1CFGR REG(RCC_BASE + 0x018u)
#define RCC_D2CFGR REG(RCC_BASE + 0x01Cu)
#define RCC_D3CFGR REG(RCC_BASE + 0x020u)
#define RCC_PLLCKSELR REG(RCC_BASE + 0x028u)
#define RCC_PLLCFGR REG(RCC_BASE + 0x02Cu)
#define RCC_PLL1DIVR REG(RCC_BASE + 0x030u)
#define RCC_PLL1FRACR REG(RCC_BASE + 0x034u)
#define RCC_D2CCIP2R REG(RCC_BASE + 0x054u)
#define RCC_AHB4ENR REG(RCC_BASE + 0x0E0u)
#define RCC_APB1LENR REG(RCC_BASE + 0x0E8u)
#define RCC_APB4ENR REG(RCC_BASE + 0x0F4u)
#define RCC_CR_HSIRDY (1u << 2)
#define RCC_CR_PLL1ON (1u << 24)
#define RCC_CR_PLL1RDY (1u << 25)
#define RCC_CFGR_SW_MASK (7u << 0)
#define RCC_CFGR_SW_HSI (0u << 0)
#define RCC_CFGR_SW_PLL1 (3u << 0)
#define RCC_CFGR_SWS_MASK (7u << 3)
#define RCC_CFGR_SWS_PLL1 (3u << 3)
#define RCC_D1CFGR_MASK 0x0F7Fu              /* D1CPRE [11:8], D1PPRE [6:4], HPRE [3:0] */
#define RCC_D1CFGR_SYSCLK_DIV2 (0x0u << 8 | 0x4u << 4 | 0x8u) /* core /1, APB3 /2, AXI/AHB /2 */
#define RCC_D2CFGR_MASK 0x0770u              /* D2PPRE2 [10:8], D2PPRE1 [6:4] */
#define RCC_D2CFGR_DIV2 (0x4u << 8 | 0x4u << 4) /* APB2 /2, APB1 /2 */
#define RCC_D3CFGR_MASK 0x0070u              /* D3PPRE [6:4] */
#define RCC_D3CFGR_DIV2 (0x4u << 4)          /* APB4 /2 */
#define RCC_PLLCKSELR_PLLSRC_MASK (3u << 0)  /* 00: HSI */
#define RCC_PLLCKSELR_DIVM1_MASK (0x3Fu << 4)
#define RCC_PLLCKSELR_DIVM1(m) ((uint32_t)(m) << 4)
#define RCC_PLLCFGR_PLL1_MASK (0xFu << 0)    /* PLL1FRACEN, PLL1VCOSEL (0: wide), PLL1RGE [3:2] */
#define RCC_PLLCFGR_PLL1RGE_8_16MHZ (3u << 2)
#define RCC_PLLCFGR_DIVP1EN (1u << 16)
#define RCC_PLLCFGR_DIVQ1EN (1u << 17)
#define RCC_PLLCFGR_DIVR1EN (1u << 18)
#define RCC_PLL1DIVR_VALUE(n, p, q, r) \
    (((uint32_t)(n) - 1u) | ((uint32_t)(p) - 1u) << 9 | ((uint32_t)(q) - 1u) << 16 | ((uint32_t)(r) - 1u) << 24)
#define RCC_D2CCIP2R_USART234578SEL_MASK (7u << 0) /* 000: rcc_pclk1 */
#define RCC_AHB4ENR_GPIODEN (1u << 3)
#define RCC_APB1LENR_USART3EN (1u << 18)
#define RCC_APB4ENR_SYSCFGEN (1u << 1)

/* PWR (RM0433 chapter 6) */
#define PWR_BASE 0x58024800u
#define PWR_CSR1 REG(PWR_BASE + 0x04u)
#define PWR_CR3 REG(PWR_BASE + 0x0Cu)
#define PWR_D3CR REG(PWR_BASE + 0x18u)
#define PWR_CSR1_ACTVOSRDY (1u << 13)
#define PWR_CR3_BYPASS (1u << 0)
#define PWR_CR3_LDOEN (1u << 1)
#define PWR_CR3_SCUEN (1u << 2)
#define PWR_D3CR_VOSRDY (1u << 13)
#define PWR_D3CR_VOS_MASK (3u << 14)
#define PWR_D3CR_VOS_SCALE1 (3u << 14)

/* SYSCFG (RM0433 chapter 12) */
#define SYSCFG_PWRCR REG(0x58000400u + 0x2Cu)
#define SYSCFG_PWRCR_ODEN (1u << 0)

/* Embedded flash interface (RM0433 chapter 4) */
#define FLASH_ACR REG(0x52002000u + 0x00u)
#define FLASH_ACR_MASK 0x3Fu /* WRHIGHFREQ [5:4], LATENCY [3:0] */
#define FLASH_ACR_VALUE(latency, wrhighfreq) ((uint32_t)(latency) | (uint32_t)(wrhighfreq) << 4)

/* Silicon revision (DBGMCU_IDC.REV_ID, which the core reads at 0x5C001000) and the rev Y
 * AXI SRAM erratum (ES0392 "Reading from AXI SRAM may lead to data read corruption"): its
 * workaround sets READ_ISS_OVERRIDE in the AXI interconnect's AXI_TARG7_FN_MOD. */
#define DBGMCU_IDC REG(0x5C001000u)
#define REV_ID_V 0x2003u
#define AXI_TARG7_FN_MOD REG(0x51000000u + 0x1108u + 0x7000u)

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

#define HSI_HZ 64000000u
#define UART_BAUD 115200u

/* Cortex-M7 system control block, debug and DWT (ARMv7-M ARM) */
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

/* Polls per ready flag: well over 10 ms at 64 MHz, where a voltage step or a PLL lock takes
 * tens to hundreds of microseconds. (Tests that simulate a flag that never comes lower it.) */
#ifndef BOARD_WAIT_POLLS
#define BOARD_WAIT_POLLS 1000000u
#endif

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

struct clock_plan {
    uint32_t core_hz; /* sys_ck = PLL1 P output = CPU clock */
    uint32_t divn1;   /* VCO = 16 MHz * divn1 */
    uint32_t flash_acr;
    int vos0; /* VOS0 (overdrive) on top of VOS1 */
};

#if BOARD_CLOCK_MHZ != 64
/* 1 once (*reg & mask) == value, 0 after BOARD_WAIT_POLLS reads without it. */
static int wait_for(volatile uint32_t *reg, uint32_t mask, uint32_t value) {
    for (uint32_t n = 0; n < BOARD_WAIT_POLLS; ++n) {
        if ((*reg & mask) == value) return 1;
    }
    return 0;
}

static const struct clock_plan plan_480 = {480000000u, 60u, FLASH_ACR_VALUE(4, 2), 1};
static const struct clock_plan plan_400 = {400000000u, 50u, FLASH_ACR_VALUE(2, 2), 0};

/* Set up the supply, voltage scale, flash, PLL1, bus prescalers and SYSCLK switch for `plan`.
 * Returns 0, or the step that never became ready (the clock is then still HSI 64 MHz, all
 * prescalers 1). */
static const char *clock_init(const struct clock_plan *plan) {
    /* Supply (RM0433 6.8.4, PWR_CR3): the LDO; the part has no SMPS. The first write after a
     * power-on reset clears SCUEN and locks the configuration until the next one. */
    if (PWR_CR3 & PWR_CR3_SCUEN) {
        PWR_CR3 = (PWR_CR3 & ~(PWR_CR3_SCUEN | PWR_CR3_LDOEN | PWR_CR3_BYPASS)) | PWR_CR3_LDOEN;
    }
    if (!wait_for(&PWR_CSR1, PWR_CSR1_ACTVOSRDY, PWR_CSR1_ACTVOSRDY)) return "PWR_CSR1.ACTVOSRDY (supply)";
    if ((PWR_CR3 & (PWR_CR3_LDOEN | PWR_CR3_BYPASS)) != PWR_CR3_LDOEN) return "PWR_CR3 locked without the LDO";

    /* Voltage scale 1 (RM0433 6.8.6, PWR_D3CR.VOS = 11), then 0 through the overdrive, which
     * SYSCFG_PWRCR.ODEN enables only from VOS1 and only with the SYSCFG clock on. */
    PWR_D3CR = (PWR_D3CR & ~PWR_D3CR_VOS_MASK) | PWR_D3CR_VOS_SCALE1;
    if (!wait_for(&PWR_D3CR, PWR_D3CR_VOSRDY, PWR_D3CR_VOSRDY)) return "PWR_D3CR.VOSRDY (VOS1)";
    if (!wait_for(&PWR_CSR1, PWR_CSR1_ACTVOSRDY, PWR_CSR1_ACTVOSRDY)) return "PWR_CSR1.ACTVOSRDY (VOS1)";
    if (plan->vos0) {
        RCC_APB4ENR |= RCC_APB4ENR_SYSCFGEN;
        (void)RCC_APB4ENR; /* read back: the clock is on before SYSCFG is written */
        SYSCFG_PWRCR |= SYSCFG_PWRCR_ODEN;
        if (!wait_for(&PWR_D3CR, PWR_D3CR_VOSRDY, PWR_D3CR_VOSRDY)) return "PWR_D3CR.VOSRDY (VOS0)";
        if (!wait_for(&PWR_CSR1, PWR_CSR1_ACTVOSRDY, PWR_CSR1_ACTVOSRDY)) return "PWR_CSR1.ACTVOSRDY (VOS0)";
    }

    /* Flash wait states for the AXI clock to come (RM0433 table 17), set before the clock
     * rises and read back until they apply. */
    FLASH_ACR = (FLASH_ACR & ~FLASH_ACR_MASK) | plan->flash_acr;
    if (!wait_for(&FLASH_ACR, FLASH_ACR_MASK, plan->flash_acr)) return "FLASH_ACR latency";

    /* PLL1 (RCC_PLLCKSELR, RCC_PLL1DIVR, RCC_PLLCFGR): HSI / 4 = 16 MHz reference (range 8-16
     * MHz), wide VCO, integer N, only the P output on; configured while it is off. */
    if (RCC_CR & RCC_CR_PLL1ON) return "RCC_CR.PLL1ON already set (PLL1 in use)";
    if (!wait_for(&RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY)) return "RCC_CR.HSIRDY";
    RCC_PLLCKSELR = (RCC_PLLCKSELR & ~(RCC_PLLCKSELR_PLLSRC_MASK | RCC_PLLCKSELR_DIVM1_MASK)) | RCC_PLLCKSELR_DIVM1(4);
    RCC_PLL1DIVR = RCC_PLL1DIVR_VALUE(plan->divn1, 2, 2, 2);
    RCC_PLL1FRACR = 0u;
    RCC_PLLCFGR = (RCC_PLLCFGR & ~(RCC_PLLCFGR_PLL1_MASK | RCC_PLLCFGR_DIVQ1EN | RCC_PLLCFGR_DIVR1EN)) |
                  RCC_PLLCFGR_PLL1RGE_8_16MHZ | RCC_PLLCFGR_DIVP1EN;
    RCC_CR |= RCC_CR_PLL1ON;
    if (!wait_for(&RCC_CR, RCC_CR_PLL1RDY, RCC_CR_PLL1RDY)) {
        RCC_CR &= ~RCC_CR_PLL1ON;
        return "RCC_CR.PLL1RDY";
    }

    /* Bus prescalers (RCC_D1CFGR, RCC_D2CFGR, RCC_D3CFGR), still at 64 MHz: core /1, AXI/AHB /2,
     * every APB /2. */
    RCC_D1CFGR = (RCC_D1CFGR & ~RCC_D1CFGR_MASK) | RCC_D1CFGR_SYSCLK_DIV2;
    RCC_D2CFGR = (RCC_D2CFGR & ~RCC_D2CFGR_MASK) | RCC_D2CFGR_DIV2;
    RCC_D3CFGR = (RCC_D3CFGR & ~RCC_D3CFGR_MASK) | RCC_D3CFGR_DIV2;

    /* SYSCLK from PLL1 (RCC_CFGR.SW), confirmed by SWS. */
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL1;
    if (!wait_for(&RCC_CFGR, RCC_CFGR_SWS_MASK, RCC_CFGR_SWS_PLL1)) {
        RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_HSI;
        RCC_D1CFGR &= ~RCC_D1CFGR_MASK;
        RCC_D2CFGR &= ~RCC_D2CFGR_MASK;
        RCC_D3CFGR &= ~RCC_D3CFGR_MASK;
        RCC_CR &= ~RCC_CR_PLL1ON;
        return "RCC_CFGR.SWS (switch to PLL1)";
    }
    return 0;
}
#endif

static void uart_init(uint32_t kernel_hz) {
    RCC_AHB4ENR |= RCC_AHB4ENR_GPIODEN;
    RCC_APB1LENR |= RCC_APB1LENR_USART3EN;
    (void)RCC_APB1LENR; /* read back: the enable takes effect before the peripheral is touched */
    RCC_D2CCIP2R &= ~RCC_D2CCIP2R_USART234578SEL_MASK; /* kernel clock: rcc_pclk1 (the reset choice) */

    /* PD8, PD9: alternate function 7, high speed, no pull. */
    GPIOD_MODER = (GPIOD_MODER & ~(0xFu << 16)) | (0xAu << 16);
    GPIOD_OSPEEDR |= 0xFu << 16;
    GPIOD_PUPDR &= ~(0xFu << 16);
    GPIOD_AFRH = (GPIOD_AFRH & ~0xFFu) | 0x77u;

    USART3_CR1 = 0u;
    USART3_CR2 = 0u;
    USART3_CR3 = 0u;
    /* 16x oversampling: 1042 at 120 MHz (-0.03 %), 868 at 100 MHz (+0.01 %), 556 at 64 MHz (-0.08 %). */
    USART3_BRR = (kernel_hz + UART_BAUD / 2u) / UART_BAUD;
    USART3_CR1 = USART_CR1_TE | USART_CR1_RE | USART_CR1_UE;
}

static void uart_putc(char c) {
    while ((USART3_ISR & USART_ISR_TXE) == 0u) {
    }
    USART3_TDR = (uint8_t)c;
}

static void print_uint(uint32_t v) {
    char digits[11];
    int n = 10;
    digits[n] = '\0';
    do {
        digits[--n] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    board_print(&digits[n]);
}

void board_init(void) {
    uint32_t rev_id = DBGMCU_IDC >> 16;
    if (rev_id < 0x2000u) AXI_TARG7_FN_MOD = 1u; /* rev Y: AXI SRAM read erratum workaround */
    enable_caches();

    uint32_t core_hz = HSI_HZ, pclk1_hz = HSI_HZ;
    const char *failed = 0, *note = 0;
#if BOARD_CLOCK_MHZ != 64
    const struct clock_plan *plan = BOARD_CLOCK_MHZ == 480 ? &plan_480 : &plan_400;
    if (plan->vos0 && rev_id < REV_ID_V) { /* anything before rev V: 400 MHz at most */
        plan = &plan_400;
        note = "rev Y silicon: 480 MHz needs rev V, running at 400 MHz\n";
    }
    failed = clock_init(plan);
    if (!failed) {
        core_hz = plan->core_hz;
        pclk1_hz = plan->core_hz / 4u; /* AXI/AHB /2, APB1 /2 */
    }
#endif
    uart_init(pclk1_hz);

    DEMCR |= DEMCR_TRCENA;
    DWT_LAR = 0xC5ACCE55u; /* unlock DWT writes (Cortex-M7) */
    DWT_CYCCNT = 0u;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;

    board_print("clock ");
    print_uint(core_hz);
    board_print("\n");
    if (note) {
        board_print("warning clock: ");
        board_print(note);
    }
    if (failed) {
        board_print("warning clock: ");
        board_print(failed);
        board_print(" never became ready, running at 64 MHz from the HSI\n");
    }
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
