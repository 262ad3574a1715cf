/* Function multi-versioning for the quantizers' hot loops (internal).
 *
 * The project builds for baseline x86-64 (SSE2).  SR_CODEC_CLONES makes GCC
 * and clang also compile the marked function for x86-64-v3 (AVX2) and v4
 * (AVX-512) and pick the best at load time (ifunc).  The code is plain
 * IEEE f32 arithmetic built with -ffp-contract=off, so every clone gives
 * bit-identical results; only the vector width changes. */
#ifndef SR_CODEC_SIMD_H
#define SR_CODEC_SIMD_H

/* GCC only: clang 14 names the ifunc of an external multiversioned
 * function "NAME.ifunc", so callers in other files do not link. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define SR_CODEC_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define SR_CODEC_CLONES
#endif

#endif
