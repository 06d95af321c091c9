#ifndef KVSTORE_CKERNELS_H
#define KVSTORE_CKERNELS_H

/* Kernels that need instructions beyond the Swift targets' baseline (haswell), chosen at run
   time: the binary runs on any x86-64 with AVX2 and uses these where the CPU has more. */

/* 1 when the CPU has AVX-512F and the OS saves its registers, else 0. */
int kvstore_has_avx512(void);

/* The sixteen dot products of rows a[0..3] with rows b[0..3], each of n floats:
   out[4 * i + j] = a[i] · b[j], each summed in exactly VectorKernels.dot's order (two 8-wide
   fused multiply-add accumulators over 16-float steps, the low one over a last 8, the two
   added lane by lane, their lanes summed in order from -0, then the rest one product at a
   time), so the result is bit for bit that of sixteen calls of it. A 512-bit register holds
   both of dot's accumulators, and the sixteen fit in registers where AVX2's sixteen
   registers spill. Only where kvstore_has_avx512() is 1. */
void kvstore_dot4x4_avx512(const float *const a[4], const float *const b[4], long n, float out[16]);

#endif
