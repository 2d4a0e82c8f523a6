#pragma once
/// \file random.hpp
/// `generator`: an explicit, seeded random source (xoshiro256**), so that
/// results depend on the seed and never on hidden global state.

#include <cmath>
#include <cstdint>
#include <limits>

namespace protoseg {

/// A small, fast, reproducible pseudo-random generator (xoshiro256** seeded
/// through splitmix64). Same seed, same sequence, on every platform.
class generator {
 public:
  explicit generator(std::uint64_t seed = 0x5eed) { this->seed(seed); }

  void seed(std::uint64_t s) {
    for (auto& w : state_) {
      s += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = s;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      w = z ^ (z >> 31);
    }
    has_spare_ = false;
  }

  /// 64 random bits.
  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  /// Uniform in [0, 1) with 53 random bits.
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  /// Uniform integer in [0, n).
  std::uint64_t below(std::uint64_t n) noexcept {
    return static_cast<std::uint64_t>(uniform() * static_cast<double>(n)) % (n ? n : 1);
  }

  /// Standard normal (Box-Muller, the spare value is kept for the next call).
  double normal() noexcept {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform();
    while (u1 <= std::numeric_limits<double>::min()) u1 = uniform();
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double two_pi = 6.283185307179586476925286766559;
    spare_ = r * std::sin(two_pi * u2);
    has_spare_ = true;
    return r * std::cos(two_pi * u2);
  }

  /// Standard Gumbel sample: -log(-log(u)).
  double gumbel() noexcept {
    double u = uniform();
    while (u <= 0.0) u = uniform();
    return -std::log(-std::log(u));
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t state_[4]{};
  double spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace protoseg
