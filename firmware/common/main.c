/* tinyarch firmware entry: run every test image through the model and print its int8 output.
 *
 * Output, one line each, through the board's print function:
 *   out <i> <output bytes as two lowercase hex digits each, no separators>
 *   cycles <i> <core cycles of that ta_invoke>     (only on boards with a cycle counter)
 *   opcycles <i> <c0> <c1> ...                     (cycle counter and -DTA_PROFILE_OPS: per operator)
 *   opcycles_truncated <i> <operators>             (more than TA_PROFILE_MAX_OPS operators ran)
 *   error <i> <status>                             (ta_invoke failed; exits with status 2)
 *   done <count>
 * The exit status is 0 when every inference ran. A board may print lines of its own before the
 * first image (the STM32H743 prints `clock <Hz>`) and after `done` (its `exit <status>`).
 */
#include <stdint.h>

#include "board.h"
#include "model.h"
#include "test_data.h"

/* Called right before and right after each ta_invoke, and after every operator in a
 * -DTA_PROFILE_OPS build (the generated model's TA_OP_DONE). QEMU's instruction-count plugin
 * (firmware/qemu/insn_count.c) records its counter whenever this function starts, so the
 * difference between a pair is the instructions spent in one inference (plus a call's few). */
#if defined(TA_PROFILE_OPS) && BOARD_HAS_CYCLES
/* On a board with a cycle counter, a profiling build stores the counter at every call instead:
 * marks[0] before the inference, marks[k + 1] after operator k, the last after ta_invoke. The
 * array is bounded (TA_PROFILE_MAX_OPS operators, 4 bytes each); later operators are counted
 * but not timed. */
#ifndef TA_PROFILE_MAX_OPS
#define TA_PROFILE_MAX_OPS 256
#endif
static uint32_t marks[TA_PROFILE_MAX_OPS + 2];
static uint32_t mark_count;

__attribute__((noinline)) void ta_mark(void) {
    uint32_t now = board_cycles();
    if (mark_count < sizeof marks / sizeof marks[0]) marks[mark_count] = now;
    ++mark_count;
}
#else
__attribute__((noinline)) void ta_mark(void) { __asm__ volatile("" ::: "memory"); }
#endif

static int8_t output[TA_OUTPUT_SIZE];

/* Lines are assembled here and sent in pieces, so a large output needs no large buffer. */
static char line[80];
static unsigned line_len;

static void flush(void) {
    line[line_len] = '\0';
    board_print(line);
    line_len = 0;
}

static void put_char(char c) {
    if (line_len == sizeof line - 1) flush();
    line[line_len++] = c;
}

static void put_str(const char *s) {
    while (*s) put_char(*s++);
}

static void put_uint(uint32_t v) {
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    while (n > 0) put_char(digits[--n]);
}

static void put_hex_byte(uint8_t b) {
    static const char hex[] = "0123456789abcdef";
    put_char(hex[b >> 4]);
    put_char(hex[b & 0xfu]);
}

#if defined(TA_PROFILE_OPS) && BOARD_HAS_CYCLES
/* `opcycles <i> ...`: the cycles between consecutive marks, one value per operator (the first
 * includes the input copy; the output copy after the last operator is left out). */
static void print_operator_cycles(uint32_t i) {
    uint32_t operators = mark_count >= 2u ? mark_count - 2u : 0u;
    uint32_t shown = operators < TA_PROFILE_MAX_OPS ? operators : TA_PROFILE_MAX_OPS;
    put_str("opcycles ");
    put_uint(i);
    for (uint32_t k = 0; k < shown; ++k) {
        put_char(' ');
        put_uint(marks[k + 1] - marks[k]);
    }
    put_char('\n');
    if (shown < operators) {
        put_str("opcycles_truncated ");
        put_uint(i);
        put_char(' ');
        put_uint(operators);
        put_char('\n');
    }
    mark_count = 0;
}
#else
static void print_operator_cycles(uint32_t i) { (void)i; }
#endif

int main(void) {
    board_init();
    for (uint32_t i = 0; i < (uint32_t)TA_TEST_COUNT; ++i) {
        uint32_t start = board_cycles();
        ta_mark();
        int status = ta_invoke(ta_test_inputs[i], output);
        ta_mark();
        uint32_t cycles = board_cycles() - start;
        if (status != 0) {
            put_str("error ");
            put_uint(i);
            put_char(' ');
            if (status < 0) put_char('-');
            put_uint(status < 0 ? 0u - (uint32_t)status : (uint32_t)status);
            put_char('\n');
            flush();
            board_exit(2);
        }
        put_str("out ");
        put_uint(i);
        put_char(' ');
        for (uint32_t j = 0; j < (uint32_t)TA_OUTPUT_SIZE; ++j) put_hex_byte((uint8_t)output[j]);
        put_char('\n');
        if (BOARD_HAS_CYCLES) {
            put_str("cycles ");
            put_uint(i);
            put_char(' ');
            put_uint(cycles);
            put_char('\n');
        }
        print_operator_cycles(i);
        flush();
    }
    put_str("done ");
    put_uint((uint32_t)TA_TEST_COUNT);
    put_char('\n');
    flush();
    board_exit(0);
    return 0;
}
