#pragma once
/// \file error.hpp
/// Exception types thrown by protoseg on bad input.

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace protoseg {

/// Base of every exception the library throws for bad input or failed I/O.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A tensor or argument has the wrong shape, rank or an incompatible broadcast.
class shape_error : public error {
 public:
  using error::error;
};

/// A value is out of its allowed range (axis, index, class id, option, NaN).
class value_error : public error {
 public:
  using error::error;
};

/// Autograd misuse: backward through a freed graph, a non-scalar root, ...
class autograd_error : public error {
 public:
  using error::error;
};

/// A file is missing, truncated, corrupt or of an unsupported format.
class io_error : public error {
 public:
  using error::error;
};

namespace detail {

template <class... Args>
std::string concat_message(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

/// Throws E with the streamed arguments as message.
template <class E = error, class... Args>
[[noreturn]] void fail(Args&&... args) {
  throw E(concat_message(std::forward<Args>(args)...));
}

}  // namespace detail
}  // namespace protoseg
