#include "half.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define WIDEANN_HAVE_F16C_PATH 1
#endif

namespace wideann {

namespace {

// The float nearest x, with round-to-odd: exact when x is a float, otherwise the float just below |x|
// (towards zero) with its last bit set. Beyond float's range that is FLT_MAX (odd), which any later
// rounding to half takes to inf, as the exact value would.
inline float to_float_round_to_odd(double x) {
  float f = static_cast<float>(x);  // to nearest; inf beyond the range
  if (static_cast<double>(f) != x && x == x) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (std::fabs(static_cast<double>(f)) > std::fabs(x)) --u;  // it went away from zero: step back
    u |= 1;
    std::memcpy(&f, &u, 4);
  }
  return f;
}

// A float to half bits, rounded to nearest even (what F16C's vcvtps2ph does with imm8 = 0).
inline uint16_t float_to_half_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  const uint32_t abs = u & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0);  // inf, nan
  if (abs >= 0x477ff000) return sign | 0x7c00;  // 65520 and above round to inf
  if (abs < 0x38800000) {  // below 2^-14: a subnormal half, round(|f| / 2^-24)
    const int e = static_cast<int>(abs >> 23);
    const uint32_t m = e ? (abs & 0x7fffff) | 0x800000 : (abs & 0x7fffff);  // |f| = m * 2^(max(e,1) - 150)
    const int s = 126 - (e ? e : 1);  // |f| / 2^-24 = m / 2^s, s >= 14
    if (s > 25) return sign;  // below a quarter of the smallest subnormal: 0
    uint32_t q = m >> s;
    const uint32_t rem = m & ((1u << s) - 1), mid = 1u << (s - 1);
    if (rem > mid || (rem == mid && (q & 1))) ++q;  // q may become 0x400: the smallest normal, encoded right
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t h = (abs - 0x38000000) >> 13;  // rebias the exponent (127 - 15), keep 10 bits of mantissa
  const uint32_t rem = abs & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // a carry moves into the exponent, as it should
  return static_cast<uint16_t>(sign | h);
}

#ifdef WIDEANN_HAVE_F16C_PATH
// Four 64-bit lane masks as four 32-bit ones (each half of a mask is all ones or all zeros).
__attribute__((target("avx"))) inline __m128i narrow(__m256d m) {
  const __m256 s = _mm256_castpd_ps(m);
  return _mm_castps_si128(_mm_shuffle_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1),
                                         _MM_SHUFFLE(2, 0, 2, 0)));
}

// to_float_round_to_odd on four doubles.
__attribute__((target("avx,f16c"))) inline __m128 to_float_round_to_odd4(__m256d x) {
  const __m128 f = _mm256_cvtpd_ps(x);
  const __m256d back = _mm256_cvtps_pd(f);
  const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
  const __m256d inexact = _mm256_cmp_pd(back, x, _CMP_NEQ_OQ);  // false for nan, as in software
  const __m256d away = _mm256_cmp_pd(_mm256_and_pd(back, abs_mask), _mm256_and_pd(x, abs_mask), _CMP_GT_OQ);
  __m128i u = _mm_castps_si128(f);
  u = _mm_add_epi32(u, narrow(away));                                      // -1 where it went away
  u = _mm_or_si128(u, _mm_and_si128(narrow(inexact), _mm_set1_epi32(1)));  // the sticky last bit
  return _mm_castsi128_ps(u);
}

__attribute__((target("avx,f16c"))) void to_half_bits_f16c(const double* x, uint16_t* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128 lo = to_float_round_to_odd4(_mm256_loadu_pd(x + i));
    const __m128 hi = to_float_round_to_odd4(_mm256_loadu_pd(x + i + 4));
    const __m128i h = _mm256_cvtps_ph(_mm256_set_m128(hi, lo), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  for (; i < n; ++i) out[i] = float_to_half_bits(to_float_round_to_odd(x[i]));
}

__attribute__((target("avx,f16c"))) void half_bits_to_float_f16c(const uint16_t* h, float* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
  for (; i < n; ++i) out[i] = _cvtsh_ss(h[i]);
}

bool cpu_has_f16c() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
}
#endif

bool use_f16c() {
  static const bool use = [] {
    const char* env = std::getenv("WIDEANN_HALF_CONVERSION");
    if (env && std::strcmp(env, "software") == 0) return false;
#ifdef WIDEANN_HAVE_F16C_PATH
    return cpu_has_f16c();
#else
    return false;
#endif
  }();
  return use;
}

}  // namespace

uint16_t to_half_bits(double x) { return float_to_half_bits(to_float_round_to_odd(x)); }

void to_half_bits(const double* x, uint16_t* out, size_t n) {
#ifdef WIDEANN_HAVE_F16C_PATH
  if (use_f16c()) return to_half_bits_f16c(x, out, n);
#endif
  for (size_t i = 0; i < n; ++i) out[i] = to_half_bits(x[i]);
}

const char* half_conversion() { return use_f16c() ? "f16c" : "software"; }

float half_bits_to_float(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(man), -24);
    return sign ? -f : f;
  }
  uint32_t u = exp == 31 ? (sign | 0x7f800000 | (man << 13)) : (sign | ((exp + 112) << 23) | (man << 13));
  std::memcpy(&f, &u, 4);
  return f;
}

void half_bits_to_float(const uint16_t* h, float* out, size_t n) {
#ifdef WIDEANN_HAVE_F16C_PATH
  if (use_f16c()) return half_bits_to_float_f16c(h, out, n);
#endif
  for (size_t i = 0; i < n; ++i) out[i] = half_bits_to_float(h[i]);
}

}  // namespace wideann
