/* Host board: stdio out, the process exit status as the result. */
#include <stdio.h>
#include <stdlib.h>

#include "board.h"

void board_init(void) {}

void board_print(const char *s) { fputs(s, stdout); }

void board_exit(int status) {
    fflush(stdout);
    exit(status);
}
