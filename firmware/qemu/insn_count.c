/* QEMU TCG plugin: counts executed guest instructions, in total and at each ta_mark call.
 *
 *   qemu-system-arm ... -plugin libinsn.so[,outfile=PATH][,marker=0xADDR]
 *
 * Every translated block adds its instruction count to one counter (an inline op, no call).
 * The firmware calls ta_mark() right before and right after each ta_invoke; the plugin records
 * the counter whenever the first instruction of ta_mark runs (found at address `marker`, or by
 * the symbol name "ta_mark" when no address is given), and the difference between a pair is the
 * instructions of one inference, the call overhead of a few instructions included.
 *
 * At exit it writes (to outfile, or stderr):
 *   insns <total executed instructions>
 *   mark <i> <instructions executed before the i-th ta_mark call>   (one line per call)
 * main.c marks before and after each inference; a build with -DTA_PROFILE_OPS also marks after
 * every operator of the generated model, which gives per-operator counts.
 * Counting is per translated block, so a block left early by an exception counts whole; for
 * straight-line firmware without interrupts the count is exact.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_plugin_api.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static uint64_t insn_total;
static uint64_t *marks;
static size_t n_marks, cap_marks;
static int have_marker;
static uint64_t marker_addr;
static const char *marker_symbol = "ta_mark";
static char outfile[4096];

static void on_mark(unsigned int vcpu_index, void *userdata) {
    (void)vcpu_index;
    (void)userdata;
    if (n_marks == cap_marks) {
        size_t cap = cap_marks ? 2 * cap_marks : 1024;
        uint64_t *grown = realloc(marks, cap * sizeof *marks);
        if (grown == NULL) return;
        marks = grown;
        cap_marks = cap;
    }
    marks[n_marks++] = insn_total;
}

static int is_marker(struct qemu_plugin_tb *tb, size_t i, struct qemu_plugin_insn *insn) {
    if (have_marker) return qemu_plugin_insn_vaddr(insn) == marker_addr;
    const char *sym = qemu_plugin_insn_symbol(insn);
    if (sym == NULL || strcmp(sym, marker_symbol) != 0) return 0;
    /* Only the function's first instruction: the previous one must belong elsewhere. */
    if (i == 0) return 1;
    const char *prev = qemu_plugin_insn_symbol(qemu_plugin_tb_get_insn(tb, i - 1));
    return prev == NULL || strcmp(prev, marker_symbol) != 0;
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insn_total, n);
    for (size_t i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        if (is_marker(tb, i, insn)) qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
}

static void on_atexit(qemu_plugin_id_t id, void *userdata) {
    (void)id;
    (void)userdata;
    FILE *out = outfile[0] ? fopen(outfile, "w") : stderr;
    if (out == NULL) {
        fprintf(stderr, "insn_count: cannot write %s\n", outfile);
        out = stderr;
    }
    fprintf(out, "insns %" PRIu64 "\n", insn_total);
    for (size_t i = 0; i < n_marks; ++i) fprintf(out, "mark %zu %" PRIu64 "\n", i, marks[i]);
    if (out != stderr) fclose(out);
    else fflush(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; ++i) {
        const char *arg = argv[i];
        if (strncmp(arg, "outfile=", 8) == 0) {
            snprintf(outfile, sizeof outfile, "%s", arg + 8);
        } else if (strncmp(arg, "marker=", 7) == 0) {
            char *end;
            marker_addr = strtoull(arg + 7, &end, 0) & ~(uint64_t)1; /* Thumb bit */
            have_marker = *end == '\0';
            if (!have_marker) {
                fprintf(stderr, "insn_count: bad marker address '%s'\n", arg + 7);
                return 1;
            }
        } else {
            fprintf(stderr, "insn_count: unknown argument '%s' (expected outfile=PATH or marker=ADDR)\n", arg);
            return 1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_atexit_cb(id, on_atexit, NULL);
    return 0;
}
