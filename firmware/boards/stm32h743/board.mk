# STM32H743 (Nucleo-H743ZI): Cortex-M7 at the reset clock (HSI 64 MHz), console on USART3.
CROSS ?= arm-none-eabi-
CC := $(CROSS)gcc
SIZE := $(CROSS)size
OBJCOPY := $(CROSS)objcopy
ARCH_FLAGS := -mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16
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

# Program over the Nucleo's ST-LINK, then reset into the firmware. Read the output with e.g.
#   picocom -b 115200 /dev/ttyACM0
# Without OpenOCD, STM32CubeProgrammer does the same:
#   STM32_Programmer_CLI -c port=SWD -w build/firmware.elf -v -rst
# or copy build/firmware.bin onto the NOD_H743ZI USB drive the ST-LINK presents.
flash: $(TARGET)
	$(OPENOCD) -f $(OPENOCD_BOARD) -c "program $(TARGET) verify reset exit"
