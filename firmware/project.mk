# tinyarch firmware project build, included by the project's Makefile.
#
#   make [BOARD=host|mps2-an500|stm32h743] [KERNELS=reference|optimized]
#   make size | make run | make flash (stm32h743) | make clean
#
# Output: build/firmware (host) or build/firmware.elf (microcontrollers). A change of BOARD,
# KERNELS or flags rebuilds everything (build/config records the last configuration).
.DEFAULT_GOAL := all

BOARD ?= host
KERNELS ?= reference
BUILD ?= build
OPT ?= -O2

ifeq ($(KERNELS),reference)
KERNEL_SRC := kernels/reference.c
KERNEL_DEFS :=
else ifeq ($(KERNELS),optimized)
KERNEL_SRC := kernels/optimized_m7.c
KERNEL_DEFS := -DTA_OPTIMIZED
else
$(error KERNELS must be reference or optimized, not '$(KERNELS)')
endif

BOARD_DIR := boards/$(BOARD)
ifeq ($(wildcard $(BOARD_DIR)/board.mk),)
$(error BOARD '$(BOARD)' not found: no $(BOARD_DIR)/board.mk in this project)
endif

# The board sets CC, SIZE, ARCH_FLAGS, BOARD_SRCS, LDFLAGS, LDLIBS, TARGET and its own targets.
include $(BOARD_DIR)/board.mk

SRCS := model.c test_data.c common/main.c $(KERNEL_SRC) $(BOARD_SRCS)
OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(SRCS))
CFLAGS := $(ARCH_FLAGS) $(OPT) -std=c99 -ffunction-sections -fdata-sections -Wall -Wextra \
	$(KERNEL_DEFS) -I. -Ikernels -Icommon -I$(BOARD_DIR) $(EXTRA_CFLAGS)
CONFIG := $(BOARD) $(KERNELS) $(CC) $(CFLAGS) $(LDFLAGS) $(LDLIBS)

.PHONY: all size clean run flash FORCE

all: $(TARGET)

# Rewritten only when the configuration differs, so objects rebuild exactly when it changes.
$(BUILD)/config: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CONFIG)' | cmp -s - $@ || echo '$(CONFIG)' > $@

$(BUILD)/obj/%.o: %.c $(BUILD)/config
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(TARGET): $(OBJS) $(LDSCRIPT) $(BUILD)/config
	$(CC) $(ARCH_FLAGS) $(OBJS) $(LDFLAGS) $(LDLIBS) -o $@

size: $(TARGET)
	$(SIZE) $(TARGET)

clean:
	rm -rf $(BUILD)

FORCE:

-include $(OBJS:.o=.d)
