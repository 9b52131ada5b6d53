/* The few ARM DSP (ACLE) intrinsics that optimized_m7.c uses, under ta_ names.
 *
 * On a core with the DSP extension (Cortex-M4/M7/M33..., __ARM_FEATURE_DSP) they map to GCC's
 * arm_acle.h intrinsics, one instruction each. Elsewhere they are portable C emulations with the
 * same results, so the optimised kernels can be built and checked on a host. Packed values are
 * uint32_t: int8x4 (bytes 0..3) or int16x2 (halfwords lo, hi). Wrap-around is modulo 2^16 per
 * halfword for the adds and modulo 2^32 for the accumulations, as on the hardware.
 */
#ifndef TA_ACLE_COMPAT_H
#define TA_ACLE_COMPAT_H

#include <stdint.h>
#include <string.h>

/* Rotate right by n (1..31). GCC emits a single ROR; arm_acle.h of GCC 12 has no __ror. */
static inline uint32_t ta_ror(uint32_t x, unsigned n) {
    return (x >> n) | (x << ((32u - n) & 31u));
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP

#include <arm_acle.h>

/* Sign-extend bytes 0 and 2 to the two halfwords. */
static inline uint32_t ta_sxtb16(uint32_t x) {
    return (uint32_t)__sxtb16((int8x4_t)x);
}

/* a + (sign-extended bytes 0 and 2 of x), per halfword. */
static inline uint32_t ta_sxtab16(uint32_t a, uint32_t x) {
    return (uint32_t)__sxtab16((int16x2_t)a, (int8x4_t)x);
}

/* Bytes 1 and 3 sign-extended (SXTB16 with ROR #8, one instruction; GCC does not fuse the
 * intrinsic with a separate rotate). */
static inline uint32_t ta_sxtb16_ror8(uint32_t x) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* a + (sign-extended bytes 1 and 3 of x), per halfword (SXTAB16 with ROR #8). */
static inline uint32_t ta_sxtab16_ror8(uint32_t a, uint32_t x) {
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}

/* acc + a.lo * b.lo + a.hi * b.hi (signed halfwords). */
static inline int32_t ta_smlad(uint32_t a, uint32_t b, int32_t acc) {
    return __smlad((int16x2_t)a, (int16x2_t)b, acc);
}

/* acc + a.lo * b.lo */
static inline int32_t ta_smlabb(uint32_t a, uint32_t b, int32_t acc) {
    return __smlabb((int32_t)a, (int32_t)b, acc);
}

/* acc + a.hi * b.lo */
static inline int32_t ta_smlatb(uint32_t a, uint32_t b, int32_t acc) {
    return __smlatb((int32_t)a, (int32_t)b, acc);
}

/* acc + a.lo * b.hi */
static inline int32_t ta_smlabt(uint32_t a, uint32_t b, int32_t acc) {
    return __smlabt((int32_t)a, (int32_t)b, acc);
}

/* x saturated to the int8 range. */
static inline int32_t ta_ssat8(int32_t x) {
    return __ssat(x, 8);
}

/* The word at *p, then *p += 4: one post-indexed LDR (GCC rarely forms it on its own). */
static inline uint32_t ta_load32_next(const void **p) {
    uint32_t v;
    __asm__("ldr %0, [%1], #4" : "=r"(v), "+r"(*p) : "m"(*(const uint32_t *)*p));
    return v;
}

/* acc + a.hi * b.hi */
static inline int32_t ta_smlatt(uint32_t a, uint32_t b, int32_t acc) {
    return __smlatt((int32_t)a, (int32_t)b, acc);
}

#else /* portable emulation */

static inline int32_t ta_lo16(uint32_t x) {
    return (int32_t)(int16_t)(uint16_t)(x & 0xFFFFu);
}

static inline int32_t ta_hi16(uint32_t x) {
    return (int32_t)(int16_t)(uint16_t)(x >> 16);
}

static inline uint32_t ta_sxtb16(uint32_t x) {
    const uint32_t lo = (uint32_t)(int32_t)(int8_t)(uint8_t)(x & 0xFFu) & 0xFFFFu;
    const uint32_t hi = (uint32_t)(int32_t)(int8_t)(uint8_t)((x >> 16) & 0xFFu) & 0xFFFFu;
    return lo | (hi << 16);
}

static inline uint32_t ta_sxtab16(uint32_t a, uint32_t x) {
    const uint32_t e = ta_sxtb16(x);
    const uint32_t lo = (a + e) & 0xFFFFu;
    const uint32_t hi = ((a >> 16) + (e >> 16)) & 0xFFFFu;
    return lo | (hi << 16);
}

static inline uint32_t ta_sxtb16_ror8(uint32_t x) {
    return ta_sxtb16(ta_ror(x, 8));
}

static inline uint32_t ta_sxtab16_ror8(uint32_t a, uint32_t x) {
    return ta_sxtab16(a, ta_ror(x, 8));
}

static inline int32_t ta_smlad(uint32_t a, uint32_t b, int32_t acc) {
    const uint32_t p = (uint32_t)(ta_lo16(a) * ta_lo16(b)) + (uint32_t)(ta_hi16(a) * ta_hi16(b));
    return (int32_t)((uint32_t)acc + p);
}

static inline int32_t ta_smlabb(uint32_t a, uint32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)(ta_lo16(a) * ta_lo16(b)));
}

static inline int32_t ta_smlatb(uint32_t a, uint32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)(ta_hi16(a) * ta_lo16(b)));
}

static inline int32_t ta_smlabt(uint32_t a, uint32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)(ta_lo16(a) * ta_hi16(b)));
}

static inline int32_t ta_ssat8(int32_t x) {
    return x < -128 ? -128 : (x > 127 ? 127 : x);
}

static inline uint32_t ta_load32_next(const void **p) {
    uint32_t v;
    memcpy(&v, *p, sizeof v);
    *p = (const uint8_t *)*p + 4;
    return v;
}

static inline int32_t ta_smlatt(uint32_t a, uint32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)(ta_hi16(a) * ta_hi16(b)));
}

#endif

#endif
