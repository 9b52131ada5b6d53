/* QEMU mps2-an500 (Cortex-M7, FPU fpv5-d16): vector table and semihosting I/O (reset: common/startup_m7.c).
 *
 * Run: qemu-system-arm -M mps2-an500 -nographic -semihosting-config enable=on,target=native
 *      -kernel build/firmware.elf
 * QEMU loads the ELF, takes SP and the reset vector from address 0 and exits with the status
 * passed to board_exit (SYS_EXIT_EXTENDED), so a script sees the program's result directly.
 */
#include <stdint.h>

#include "board.h"

/* Linker script symbols (mps2_an500.ld). */
extern uint32_t _estack;

/* Arm semihosting operations and reasons. */
#define SYS_WRITE0 0x04
#define SYS_EXIT 0x18
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define ADP_STOPPED_RUNTIME_ERROR_UNKNOWN 0x20023

static int semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void board_init(void) {}

void board_print(const char *s) { semihost(SYS_WRITE0, s); }

void board_exit(int status) {
    /* Extended exit carries the status; plain SYS_EXIT (32-bit form) only tells success from failure. */
    uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
    semihost(SYS_EXIT_EXTENDED, block);
    semihost(SYS_EXIT, (const void *)(uintptr_t)(status == 0 ? ADP_STOPPED_APPLICATION_EXIT
                                                              : ADP_STOPPED_RUNTIME_ERROR_UNKNOWN));
    for (;;) {
    }
}

/* Any fault or unexpected interrupt ends the run with status 3 and a message. */
void Default_Handler(void) {
    board_print("fault: unexpected exception\n");
    board_exit(3);
}

void Reset_Handler(void); /* common/startup_m7.c */

typedef void (*vector_t)(void);

/* 16 system vectors + the AN500's 32 interrupts; entry 0 is the initial stack pointer. */
__attribute__((section(".isr_vector"), used)) const vector_t vector_table[16 + 32] = {
    [0] = (vector_t)&_estack,
    [1] = Reset_Handler,
    [2 ... 47] = Default_Handler,
};
