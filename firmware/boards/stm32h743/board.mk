# STM32H743 (Nucleo-H743ZI): Cortex-M7, console on USART3.
# CLOCK_MHZ: 480 (default; PLL1 from HSI, VOS0), 400 (VOS1, rev Y silicon's maximum) or 64 (the reset
# clock, HSI without the PLL). See board.c and README.md.
CLOCK_MHZ ?= 480
ifeq ($(filter $(CLOCK_MHZ),480 400 64),)
$(error CLOCK_MHZ must be 480, 400 or 64, not '$(CLOCK_MHZ)')
endif
CROSS ?= arm-none-eabi-
CC := $(CROSS)gcc
SIZE := $(CROSS)size
OBJCOPY := $(CROSS)objcopy
# The clock define rides on ARCH_FLAGS, so it is part of the recorded configuration and a change rebuilds.
ARCH_FLAGS := -mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16 -DBOARD_CLOCK_MHZ=$(CLOCK_MHZ)
BOARD_SRCS := $(BOARD_DIR)/board.c common/startup_m7.c
LDSCRIPT := $(BOARD_DIR)/stm32h743.ld
LDFLAGS := -T$(LDSCRIPT) -nostartfiles --specs=nano.specs --specs=nosys.specs \
	-Wl,--gc-sections -Wl,-Map=$(BUILD)/firmware.map -Wl,--print-memory-usage
LDLIBS := -lm
TARGET := $(BUILD)/firmware.elf

OPENOCD ?= openocd
OPENOCD_BOARD ?= board/st_nucleo_h743zi.cfg

$(BUILD)/firmware.bin: $(TARGET)
	$(OBJCOPY) -O binary $< $@

$(BUILD)/firmware.hex: $(TARGET)
	$(OBJCOPY) -O ihex $< $@

# Raw binary and Intel hex for programmers that do not read ELF.
.PHONY: images
images: $(BUILD)/firmware.bin $(BUILD)/firmware.hex

# Program over the Nucleo's ST-LINK, then reset into the firmware. Read the output with
#   tinyarch read-uart . --port /dev/ttyACM0      (checks it against expected.txt)
# or e.g. picocom -b 115200 /dev/ttyACM0. Without OpenOCD, STM32CubeProgrammer does the same:
#   STM32_Programmer_CLI -c port=SWD -w build/firmware.elf -v -rst
# or copy build/firmware.bin onto the NOD_H743ZI USB drive the ST-LINK presents.
flash: $(TARGET)
	$(OPENOCD) -f $(OPENOCD_BOARD) -c "program $(TARGET) verify reset exit"
