#pragma once
/// \file policy.hpp
/// Backend policy tag types (`cpu`, `cuda`), the `policy` concept and the
/// `backend_traits` customisation point. Shared headers include only this.

#include <concepts>
#include <cstddef>
#include <memory>
#include <type_traits>

namespace protoseg {

/// Eigen / OpenMP backend on the host. The default policy.
struct cpu {
  static constexpr const char* name = "cpu";
};

/// Thrust / CUDA backend. Under g++ its Thrust paths run on Thrust's OpenMP
/// device system; under nvcc they run on the GPU.
struct cuda {
  static constexpr const char* name = "cuda";
};

namespace detail {
template <class>
inline constexpr bool always_false = false;
}

/// Storage and copy rules of a backend. Each backend specialises it in
/// `backend/<name>/traits.*`; using a policy whose backend header was not
/// included fails here with one readable message.
template <class Policy>
struct backend_traits {
  static_assert(detail::always_false<Policy>,
                "protoseg: no backend_traits for this policy type. Use protoseg::cpu, or "
                "protoseg::cuda after including <protoseg/backend/cuda/traits.cuh>.");
};

/// What a policy type must provide: a name and a `backend_traits`
/// specialisation that allocates storage and copies to and from the host.
template <class P>
concept policy = requires {
  { P::name } -> std::convertible_to<const char*>;
  { backend_traits<P>::host_accessible } -> std::convertible_to<bool>;
  { backend_traits<P>::template allocate<float>(std::size_t{1}) };
};

/// True when the memory of a policy's tensors can be read on the host.
template <class P>
inline constexpr bool host_accessible_v = backend_traits<P>::host_accessible;

}  // namespace protoseg
