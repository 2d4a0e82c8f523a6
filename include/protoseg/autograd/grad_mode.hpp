#pragma once
/// \file grad_mode.hpp
/// Whether operations record the graph, and the `no_grad` guard.

namespace protoseg {

namespace detail {
inline bool& grad_mode_flag() noexcept {
  thread_local bool enabled = true;
  return enabled;
}
}  // namespace detail

/// True when differentiable operations record a graph on this thread.
inline bool grad_enabled() noexcept { return detail::grad_mode_flag(); }

/// RAII guard: no graph is recorded while it lives (inference, Sinkhorn,
/// prototype updates). Restores the previous mode when destroyed.
class no_grad {
 public:
  no_grad() noexcept : previous_(detail::grad_mode_flag()) { detail::grad_mode_flag() = false; }
  ~no_grad() { detail::grad_mode_flag() = previous_; }
  no_grad(const no_grad&) = delete;
  no_grad& operator=(const no_grad&) = delete;

 private:
  bool previous_;
};

}  // namespace protoseg
