/* Reset for the Cortex-M7 boards (mps2-an500, stm32h743): FPU on, .data copied, .bss zeroed,
 * then main; its status goes to board_exit. The board supplies the vector table and the linker
 * script that defines the symbols below. */
#include <stdint.h>

#include "board.h"

int main(void);

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss;

/* C part of the reset: runs with the FPU already on. */
__attribute__((noreturn, used)) static void reset_c(void) {
    uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;) *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;) *dst++ = 0u;
    board_exit(main());
}

/* Enables CP10/CP11 (CPACR, 0xE000ED88) in assembly before any compiled code can touch an FPU
 * register: with -mfloat-abi=hard even the copy loops may. */
__attribute__((naked, noreturn)) void Reset_Handler(void) {
    __asm__ volatile(
        "ldr r0, =0xE000ED88\n"
        "ldr r1, [r0]\n"
        "orr r1, r1, #(0xF << 20)\n"
        "str r1, [r0]\n"
        "dsb\n"
        "isb\n"
        "b reset_c\n");
}
