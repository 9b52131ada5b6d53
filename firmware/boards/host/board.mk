# Host build: the firmware as a native program (build/firmware), for checking outputs quickly.
# optimized_m7.c builds here with its portable fallbacks.
HOST_CC ?= cc
CC := $(HOST_CC)
SIZE := size
ARCH_FLAGS :=
BOARD_SRCS := $(BOARD_DIR)/board.c
LDFLAGS := -Wl,--gc-sections
LDLIBS := -lm
TARGET := $(BUILD)/firmware

run: $(TARGET)
	$(TARGET)
