// IEEE half precision (float16): conversions, in software and, where the CPU has F16C, in hardware.
//
// Both paths give the same bits for every double but NaN (which the engine never converts): the value rounded once, to nearest even, from the
// double (not from a float in between), subnormal halves included, and inf where it is beyond 65504 +
// half a unit (the callers refuse those). Hardware: AVX narrows the double to a float with round-to-
// odd (an inexact float gets an odd last bit, so that the second rounding cannot go wrong; float's 24
// bits are more than the 11 + 2 this needs), then F16C rounds that float to half. Software: the same
// two steps in plain C++.
#pragma once

#include <cstddef>
#include <cstdint>

namespace wideann {

// The half bits of x (software; the reference the hardware path must equal).
uint16_t to_half_bits(double x);
float half_bits_to_float(uint16_t h);

// out[i] = to_half_bits(x[i]) for i < n, with F16C where the CPU has it (chosen at run time).
// WIDEANN_HALF_CONVERSION=software forces the software path (tests and benchmarks compare them).
void to_half_bits(const double* x, uint16_t* out, size_t n);

// out[i] = half_bits_to_float(h[i]) for i < n (exact), with F16C where the CPU has it.
void half_bits_to_float(const uint16_t* h, float* out, size_t n);

// "f16c" or "software": the path to_half_bits(x, out, n) takes on this machine.
const char* half_conversion();

}  // namespace wideann
