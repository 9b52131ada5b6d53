"""Run an STM32H743 firmware image in unicorn, with just enough of the chip for board.c.

Unicorn is a bare Cortex-M7: it models no STM32 peripheral. This module maps the ones the firmware
touches as MMIO register files that answer the way RM0433 says the hardware does:

- RCC: PLL1RDY follows PLL1ON, and SWS follows SW, only after a few polls (so a firmware that does
  not wait is caught); HSIRDY is set.
- PWR: PWR_CR3 takes one supply write while SCUEN is set; VOSRDY and ACTVOSRDY drop for a few
  polls after every VOS or overdrive change; ACTVOS mirrors D3CR.VOS.
- SYSCFG: PWRCR.ODEN is ignored while the SYSCFG clock is off.
- FLASH_ACR reads back what was written; DBGMCU_IDC holds the silicon revision.
- USART3: ISR always reads TXE and TC; TDR writes are the console.
- DWT: CYCCNT counts executed instructions (one per cycle), so `cycles` and `opcycles` are real
  numbers of this run.

Every write the hardware would refuse or that breaks a limit is recorded in `violations`, among
them: PLL1 configured while on, SW set to PLL1 before PLL1RDY was seen, ODEN set outside VOS1 or
with SYSCFG's clock off, and at the switch to PLL1 the PLL input and VCO ranges, the core, AXI and
APB maxima of the voltage scale, and the flash wait states of RM0433 rev 7 table 17.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import unicorn
from unicorn import arm_const

RCC = 0x58024400
PWR = 0x58024800
NAMES = {
    RCC + 0x00: "RCC_CR",
    RCC + 0x10: "RCC_CFGR",
    RCC + 0x18: "RCC_D1CFGR",
    RCC + 0x1C: "RCC_D2CFGR",
    RCC + 0x20: "RCC_D3CFGR",
    RCC + 0x28: "RCC_PLLCKSELR",
    RCC + 0x2C: "RCC_PLLCFGR",
    RCC + 0x30: "RCC_PLL1DIVR",
    RCC + 0x34: "RCC_PLL1FRACR",
    RCC + 0x54: "RCC_D2CCIP2R",
    RCC + 0xE0: "RCC_AHB4ENR",
    RCC + 0xE8: "RCC_APB1LENR",
    RCC + 0xF4: "RCC_APB4ENR",
    PWR + 0x04: "PWR_CSR1",
    PWR + 0x0C: "PWR_CR3",
    PWR + 0x18: "PWR_D3CR",
    0x58000400 + 0x2C: "SYSCFG_PWRCR",
    0x52002000: "FLASH_ACR",
    0x5C001000: "DBGMCU_IDC",
    0x51008108: "AXI_TARG7_FN_MOD",
    0x40004800: "USART3_CR1",
    0x40004804: "USART3_CR2",
    0x40004808: "USART3_CR3",
    0x4000480C: "USART3_BRR",
    0x4000481C: "USART3_ISR",
    0x40004828: "USART3_TDR",
    0xE0001000: "DWT_CTRL",
    0xE0001004: "DWT_CYCCNT",
    0xE0001FB0: "DWT_LAR",
}
ADDRESS = {name: address for address, name in NAMES.items()}
RESET = {
    "RCC_CR": 0x00000025,  # HSION, HSIRDY, HSIDIVF
    "RCC_PLLCKSELR": 0x02020200,  # DIVM1..3 = 32, PLLSRC = HSI
    "RCC_PLLCFGR": 0x01FF0000,
    "RCC_PLL1DIVR": 0x01010280,
    "PWR_CR3": 0x00000006,  # SCUEN, LDOEN
    "PWR_D3CR": 0x00004000,  # VOS3
    "FLASH_ACR": 0x00000037,  # 7 wait states, WRHIGHFREQ 3
}
REV_V, REV_Y = 0x2003, 0x1003
PEEK = {
    "SCB_CPACR": 0xE000ED88,
    "SCB_CCR": 0xE000ED14,
    "DEMCR": 0xE000EDFC,
    "GPIOD_MODER": 0x58020C00,
    "GPIOD_AFRH": 0x58020C24,
}
HSI_HZ = 64_000_000
# RM0433 rev 7 table 17 as (AXI MHz upper bound, wait states) for VOS0 and VOS1 (the same below 225 MHz).
FLASH_WAIT_STATES = [(70, 0), (140, 1), (185, 2), (210, 2), (225, 3), (240, 4)]


@dataclass
class Stm32Run:
    """What an image did in the emulator."""

    uart: str
    registers: dict[str, int]
    writes: list[tuple[str, int]]
    violations: list[str]
    sysclk_hz: int
    instructions: int
    memory: dict[int, int]
    """The words at PEEK (plain-memory registers: SCB, DEMCR, GPIOD) when the run ended."""

    @property
    def lines(self) -> list[str]:
        return self.uart.replace("\r\n", "\n").splitlines()

    def written(self, name: str) -> list[int]:
        return [value for reg, value in self.writes if reg == name]


@dataclass
class _Chip:
    rev_id: int
    settle: int
    stuck: frozenset[str]
    regs: dict[str, int] = field(default_factory=dict)
    writes: list[tuple[str, int]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    uart: bytearray = field(default_factory=bytearray)
    countdown: dict[str, int] = field(default_factory=dict)
    instructions: int = 0
    cycle_base: int = 0
    sysclk_hz: int = HSI_HZ
    pll_ready_seen: bool = False

    def __post_init__(self) -> None:
        self.regs = dict(RESET)
        self.regs["DBGMCU_IDC"] = self.rev_id << 16 | 0x450

    def reg(self, name: str) -> int:
        return self.regs.get(name, 0)

    def ready(self, flag: str) -> bool:
        """A flag that settles `settle` polls after the change that cleared it (never, if stuck)."""
        if flag in self.stuck:
            return False
        left = self.countdown.get(flag, 0)
        if left > 0:
            self.countdown[flag] = left - 1
            return False
        return True

    # ---- reads ----
    def read(self, name: str) -> int:
        value = self.reg(name)
        if name == "RCC_CR":
            value = value & ~((1 << 2) | (1 << 25)) | (value & 1) << 2  # HSIRDY = HSION
            if value & 1 << 24 and self.ready("PLL1RDY"):
                value |= 1 << 25
                self.pll_ready_seen = True
        elif name == "RCC_CFGR":
            sws = (value >> 3) & 7
            if ((value & 7) != sws) and self.ready("SWS"):
                sws = value & 7
                self.regs[name] = value & ~(7 << 3) | sws << 3
            value = self.reg(name)
        elif name == "PWR_CSR1":
            vos = (self.reg("PWR_D3CR") >> 14) & 3
            value = vos << 14 | (1 << 13 if self.ready("ACTVOSRDY") else 0)
        elif name == "PWR_D3CR":
            value = value & ~(1 << 13) | (1 << 13 if self.ready("VOSRDY") else 0)
        elif name == "USART3_ISR":
            value = 0xC0
        elif name == "DWT_CYCCNT":
            value = (self.instructions - self.cycle_base) & 0xFFFFFFFF if self.reg("DWT_CTRL") & 1 else value
        return value

    # ---- writes ----
    def write(self, name: str, value: int) -> None:
        self.writes.append((name, value))
        old = self.reg(name)
        pll_on = bool(self.reg("RCC_CR") & 1 << 24)
        if name == "USART3_TDR":
            self.uart.append(value & 0xFF)
            return
        if name == "DWT_CYCCNT":
            self.cycle_base = self.instructions - value
            return
        if name == "DBGMCU_IDC":
            self.violations.append("DBGMCU_IDC is read-only")
            return
        if name in ("RCC_PLLCKSELR", "RCC_PLL1DIVR", "RCC_PLL1FRACR") and pll_on and value != old:
            self.violations.append(f"{name} written while PLL1 is on (the hardware ignores it)")
            return
        if name == "RCC_PLLCFGR" and pll_on and (value ^ old) & 0x7000F:
            self.violations.append("RCC_PLLCFGR PLL1 fields written while PLL1 is on")
            return
        if name == "RCC_CR":
            if value & 1 << 24 and not old & 1 << 24:
                self.countdown["PLL1RDY"] = self.settle
                self.pll_ready_seen = False
            value &= ~((1 << 2) | (1 << 25))
        elif name == "RCC_CFGR":
            value = value & ~(7 << 3) | old & 7 << 3  # SWS is read-only
            if (value & 7) != (old & 7):
                if value & 7 == 3:
                    self.switch_to_pll1()
                self.countdown["SWS"] = self.settle
        elif name == "PWR_CR3":
            if not old & 1 << 2:
                if (value ^ old) & 7:
                    self.violations.append("PWR_CR3 supply written after it was locked")
                value = value & ~7 | old & 7
            self.countdown["ACTVOSRDY"] = self.settle
        elif name == "PWR_D3CR":
            value &= ~(1 << 13)
            if (value ^ old) & 3 << 14:
                self.countdown["VOSRDY"] = self.countdown["ACTVOSRDY"] = self.settle
        elif name == "SYSCFG_PWRCR":
            if not self.reg("RCC_APB4ENR") & 1 << 1:
                self.violations.append("SYSCFG_PWRCR written with the SYSCFG clock off (ignored)")
                return
            if value & 1 and not old & 1:
                if (self.reg("PWR_D3CR") >> 14) & 3 != 3:
                    self.violations.append("ODEN set outside VOS1")
                if self.rev_id < 0x2000:
                    self.violations.append("ODEN set on rev Y silicon, which has no VOS0")
                self.countdown["VOSRDY"] = self.countdown["ACTVOSRDY"] = self.settle
        self.regs[name] = value

    def switch_to_pll1(self) -> None:
        """SW := PLL1: the PLL must be locked and the clock tree within RM0433's limits."""
        problems = self.violations
        if not self.pll_ready_seen:
            problems.append("SW set to PLL1 before PLL1RDY was read as set")
        cksel, cfgr, divr = self.reg("RCC_PLLCKSELR"), self.reg("RCC_PLLCFGR"), self.reg("RCC_PLL1DIVR")
        if cksel & 3 != 0:
            problems.append("PLL source is not the HSI")
        divm = (cksel >> 4) & 0x3F
        ref = HSI_HZ // divm if divm else 0
        rge = (cfgr >> 2) & 3
        lo, hi = [(1, 2), (2, 4), (4, 8), (8, 16)][rge]
        if not lo * 1_000_000 <= ref <= hi * 1_000_000:
            problems.append(f"PLL1 reference {ref} Hz outside PLL1RGE's {lo}-{hi} MHz")
        if cfgr & 1:
            problems.append("PLL1 fractional mode on")
        n, p = (divr & 0x1FF) + 1, ((divr >> 9) & 0x7F) + 1
        vco = ref * n
        wide = not cfgr & 2
        vco_max = (960 if self.rev_id >= REV_V else 836) * 1_000_000 if wide else 420_000_000
        vco_min = 192_000_000 if wide else 150_000_000
        if wide and ref < 2_000_000:
            problems.append("wide VCO with a reference under 2 MHz")
        if not vco_min <= vco <= vco_max:
            problems.append(f"VCO {vco} Hz outside {vco_min}-{vco_max}")
        if not cfgr & 1 << 16:
            problems.append("DIVP1EN off")
        if p != 1 and p % 2:
            problems.append(f"DIVP1 {p} is odd")
        sysclk = vco // p
        vos = (self.reg("PWR_D3CR") >> 14) & 3
        oden = bool(self.reg("SYSCFG_PWRCR") & 1)
        scale = 0 if vos == 3 and oden else {3: 1, 2: 2, 1: 3, 0: 3}[vos]
        core_max, axi_max = {0: (480, 240), 1: (400, 200), 2: (300, 150), 3: (200, 100)}[scale]
        d1 = self.reg("RCC_D1CFGR")
        core = sysclk // _div(d1 >> 8 & 0xF, ahb=True)
        axi = core // _div(d1 & 0xF, ahb=True)
        if core > core_max * 1_000_000 or axi > axi_max * 1_000_000:
            problems.append(f"core {core} Hz / AXI {axi} Hz over VOS{scale}'s {core_max}/{axi_max} MHz")
        apbs = [
            ("APB3", d1 >> 4 & 7),
            ("APB1", self.reg("RCC_D2CFGR") >> 4 & 7),
            ("APB2", self.reg("RCC_D2CFGR") >> 8 & 7),
            ("APB4", self.reg("RCC_D3CFGR") >> 4 & 7),
        ]
        for bus, bits in apbs:
            if axi // _div(bits) > axi_max * 1_000_000 // 2:
                problems.append(f"{bus} {axi // _div(bits)} Hz over {axi_max // 2} MHz")
        if scale <= 1:
            mhz = -(-axi // 1_000_000)
            need = next((ws for top, ws in FLASH_WAIT_STATES if mhz <= top), 7)
            if self.reg("FLASH_ACR") & 0xF < need:
                problems.append(f"FLASH_ACR latency {self.reg('FLASH_ACR') & 0xF} under {need} for AXI {axi} Hz")
        self.sysclk_hz = core


def _div(bits: int, ahb: bool = False) -> int:
    """RCC prescaler field -> divisor: 0xxx is /1; AHB 1000.. = /2 /4 /8 /16 /64 /128 /256 /512; APB 100.. = /2../16."""
    if ahb:
        return 1 if bits < 8 else [2, 4, 8, 16, 64, 128, 256, 512][bits - 8]
    return 1 if bits < 4 else 2 << (bits - 4)


def image_bytes(elf: Path) -> bytes:
    """The flash image (vectors, code, constants and .data's load image) as the programmer writes it."""
    image = elf.with_suffix(".bin")
    sections = ["-j", ".isr_vector", "-j", ".text", "-j", ".rodata", "-j", ".data"]
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", *sections, str(elf), str(image)], check=True)
    return image.read_bytes()


def run_image(
    elf: Path,
    *,
    rev_id: int = REV_V,
    settle: int = 3,
    stuck: frozenset[str] = frozenset(),
    max_instructions: int = 3_000_000,
) -> Stm32Run:
    """Run `elf` from reset until it prints `exit ...` or a fault, or `max_instructions` run out.

    `settle` is how many polls each ready flag stays low after the change that cleared it; a flag
    in `stuck` (PLL1RDY, SWS, VOSRDY, ACTVOSRDY) never comes."""
    code = image_bytes(elf)
    chip = _Chip(rev_id, settle, stuck)
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(arm_const.UC_CPU_ARM_CORTEX_M7)
    for base, size in [(0x08000000, 2 << 20), (0x20000000, 128 << 10), (0x24000000, 512 << 10)]:
        uc.mem_map(base, size)
    uc.mem_map(0x58020000, 0x4000)  # GPIOA..GPIOK: plain memory
    uc.mem_map(0xE0000000, 0x1000)
    uc.mem_map(0xE0002000, 0xFE000)  # the rest of the PPB (SCB, DEMCR): plain memory

    def on_read(_uc: object, offset: int, _size: int, base: int) -> int:
        name = NAMES.get(base + offset)
        try:
            return chip.read(name) if name else 0
        except Exception as e:  # unicorn swallows callback exceptions: make them a failure
            chip.violations.append(f"model error reading {name}: {e!r}")
            uc.emu_stop()
            return 0

    def on_write(_uc: object, offset: int, _size: int, value: int, base: int) -> None:
        name = NAMES.get(base + offset)
        if name is None:
            chip.violations.append(f"write to unmodelled register {base + offset:#010x}")
            return
        try:
            chip.write(name, value)
        except Exception as e:
            chip.violations.append(f"model error writing {name}: {e!r}")
            uc.emu_stop()
        if name == "USART3_TDR" and value == ord("\n"):
            last = chip.uart.decode(errors="replace").replace("\r\n", "\n").splitlines()[-1]
            if last.startswith(("exit ", "fault")):
                uc.emu_stop()

    pages = [0x40004000, 0x51008000, 0x52002000, 0x58000000, 0x58024000, 0x5C001000, 0xE0001000]
    for page in pages:
        uc.mmio_map(page, 0x1000, on_read, page, on_write, page)

    def count(_uc: object, _address: int, _size: int, _data: object) -> None:
        chip.instructions += 1

    uc.hook_add(unicorn.UC_HOOK_CODE, count)
    uc.mem_write(0x08000000, code)
    sp, pc = struct.unpack("<II", code[:8])
    uc.reg_write(arm_const.UC_ARM_REG_SP, sp)
    uc.emu_start(pc | 1, 0xFFFFFFFF, count=max_instructions)
    registers = {name: chip.reg(name) for name in ADDRESS}
    return Stm32Run(
        chip.uart.decode(errors="replace"),
        registers,
        chip.writes,
        chip.violations,
        chip.sysclk_hz,
        chip.instructions,
        {address: struct.unpack("<I", uc.mem_read(address, 4))[0] for address in PEEK.values()},
    )
