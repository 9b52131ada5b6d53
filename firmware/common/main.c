/* tinyarch firmware entry: run every test image through the model and print its int8 output.
 *
 * Output, one line each, through the board's print function:
 *   out <i> <output bytes as two lowercase hex digits each, no separators>
 *   cycles <i> <core cycles of that ta_invoke>     (only on boards with a cycle counter)
 *   error <i> <status>                             (ta_invoke failed; exits with status 2)
 *   done <count>
 * The exit status is 0 when every inference ran.
 */
#include <stdint.h>

#include "board.h"
#include "model.h"
#include "test_data.h"

/* Called right before and right after each ta_invoke. QEMU's instruction-count plugin
 * (firmware/qemu/insn_count.c) records its counter whenever this function starts, so the
 * difference between a pair is the instructions spent in one inference (plus a call's few). */
__attribute__((noinline)) void ta_mark(void) { __asm__ volatile("" ::: "memory"); }

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
        flush();
    }
    put_str("done ");
    put_uint((uint32_t)TA_TEST_COUNT);
    put_char('\n');
    flush();
    board_exit(0);
    return 0;
}
