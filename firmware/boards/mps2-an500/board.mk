# QEMU mps2-an500: Cortex-M7 with the double-precision FPU, run under qemu-system-arm.
CROSS ?= arm-none-eabi-
CC := $(CROSS)gcc
SIZE := $(CROSS)size
ARCH_FLAGS := -mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16
BOARD_SRCS := $(BOARD_DIR)/board.c common/startup_m7.c
LDSCRIPT := $(BOARD_DIR)/mps2_an500.ld
LDFLAGS := -T$(LDSCRIPT) -nostartfiles --specs=nano.specs --specs=nosys.specs \
	-Wl,--gc-sections -Wl,-Map=$(BUILD)/firmware.map -Wl,--print-memory-usage
LDLIBS := -lm
TARGET := $(BUILD)/firmware.elf

QEMU ?= qemu-system-arm
QEMU_FLAGS := -M mps2-an500 -nographic -monitor none -semihosting-config enable=on,target=native

# Exits with the firmware's status.
run: $(TARGET)
	$(QEMU) $(QEMU_FLAGS) -kernel $(TARGET)
