#pragma once
/// \file module.hpp
/// `nn::module<T, Policy>`: the base of every layer and model. It owns named
/// parameters (variables with requires_grad), buffers (tensors: running
/// statistics, prototypes) and child modules, registered as libtorch does
/// (`register_parameter`, `register_buffer`, `register_module`), so that
/// `named_parameters()` gives the dotted names of the same PyTorch /
/// mmsegmentation model (`block1.0.attn.q.weight`) and weights convert
/// without tables. State is saved to and loaded from safetensors files.
///
/// Modules are held by `std::shared_ptr` and are not copyable: layers keep
/// handles to their parameters and buffers, and loading a state or updating
/// running statistics writes into the existing storage.

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/error.hpp"
#include "protoseg/io/safetensors.hpp"
#include "protoseg/tensor/math.hpp"

namespace protoseg::nn {

/// How `load_state_dict` treats the keys of a state.
struct load_options {
  /// Refuse (with value_error, before changing anything) a state that lacks
  /// a key of the module or holds a key the module does not have, as
  /// PyTorch's load_state_dict(strict=True).
  bool strict = true;
  /// Accept floating-point entries of another float dtype (F16, BF16, F32,
  /// F64) and convert them; otherwise a dtype differing from the module's is
  /// refused.
  bool convert_dtype = false;
};

/// What `load_state_dict` did: keys loaded, module keys the state lacked,
/// state keys the module does not have (each sorted).
struct load_report {
  std::vector<std::string> matched, missing, unexpected;
  /// True when every module key was loaded and nothing was left over.
  bool complete() const noexcept { return missing.empty() && unexpected.empty(); }
};

template <class T, class Policy = cpu>
class module {
 public:
  using value_type = T;
  using policy_type = Policy;
  using tensor_type = tensor<T, Policy>;
  using variable_type = variable<T, Policy>;

  // (No line starts with the word `module`: nvcc would take it for the
  // C++20 module keyword and warn.)
  explicit module() = default;
  virtual ~module() = default;
  explicit module(const module&) = delete;
  auto operator=(const module&) -> module& = delete;

  /// The layer's type name (as PyTorch prints it: "Linear", "Conv2d", ...).
  virtual std::string type_name() const { return "Module"; }

 protected:
  /// Reseeds this module's own generator, if it has one (see `reseed`).
  virtual void reseed_own(std::uint64_t /*seed*/) {}

 public:

  // ---- registration ---------------------------------------------------------------

  /// Registers `value` as a parameter named `name` (no dots) and returns its
  /// variable handle, which the layer keeps.
  variable_type register_parameter(const std::string& name, tensor_type value, bool requires_grad = true) {
    check_new_name(name, "register_parameter");
    value.require_defined("register_parameter");
    variable_type v(std::move(value), requires_grad);
    params_.push_back({name, v});
    return v;
  }

  /// Registers a buffer (state that is saved and loaded but not trained).
  /// `stored` is the dtype it has in state files: the value type's by
  /// default; I64 for counters such as BatchNorm's num_batches_tracked.
  tensor_type register_buffer(const std::string& name, tensor_type value,
                              io::safetensors_dtype stored = io::safetensors_dtype_of<T>()) {
    check_new_name(name, "register_buffer");
    value.require_defined("register_buffer");
    if (stored != io::safetensors_dtype_of<T>() && stored != io::safetensors_dtype::i64)
      ::protoseg::detail::fail<value_error>("register_buffer: buffer '", name, "' stored as ", io::safetensors_dtype_name(stored),
                                ", expected ", io::safetensors_dtype_name(io::safetensors_dtype_of<T>()), " or I64");
    buffers_.push_back({name, value, stored});
    return value;
  }

  /// Registers a child module under `name`; its entries get the prefix "name.".
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    static_assert(std::is_base_of_v<module, M>, "register_module: M must derive from nn::module<T, Policy>");
    check_new_name(name, "register_module");
    if (!child) ::protoseg::detail::fail<value_error>("register_module: module '", name, "' is null");
    children_.push_back({name, child});
    return child;
  }

  // ---- queries ------------------------------------------------------------------

  /// Parameters with dotted names, own first, then each child's in order.
  std::vector<std::pair<std::string, variable_type>> named_parameters(bool recurse = true) const {
    std::vector<std::pair<std::string, variable_type>> out;
    collect_parameters("", recurse, out);
    return out;
  }
  std::vector<variable_type> parameters(bool recurse = true) const {
    std::vector<variable_type> out;
    for (auto& [n, v] : named_parameters(recurse)) out.push_back(v);
    return out;
  }
  /// Buffers with dotted names.
  std::vector<std::pair<std::string, tensor_type>> named_buffers(bool recurse = true) const {
    std::vector<std::pair<std::string, tensor_type>> out;
    for_each_buffer("", recurse, [&](const std::string& n, const buffer_entry& b) { out.push_back({n, b.value}); });
    return out;
  }
  /// Direct children with their names.
  std::vector<std::pair<std::string, std::shared_ptr<module>>> named_children() const { return children_; }
  /// The direct child `name`, or nullptr.
  std::shared_ptr<module> child(const std::string& name) const {
    for (const auto& [n, c] : children_)
      if (n == name) return c;
    return nullptr;
  }

  /// Number of parameter elements (trainable ones only when asked).
  std::int64_t num_parameters(bool trainable_only = false) const {
    std::int64_t n = 0;
    for (const auto& [name, v] : named_parameters())
      if (!trainable_only || v.requires_grad()) n += v.numel();
    return n;
  }

  /// Forgets the gradients of every parameter.
  void zero_grad() {
    for (auto& v : parameters()) v.zero_grad();
  }

  /// Training mode on or off for this module and all its children
  /// (dropout, drop-path and batch norm behave differently).
  void train(bool on = true) {
    training_ = on;
    for (auto& [n, c] : children_) c->train(on);
  }
  void eval() { train(false); }

  /// Reseeds every random generator in this module and its children
  /// (dropout, drop-path, the prototype head's Gumbel noise) from `seed`
  /// and each module's dotted name. A trainer that calls this at every
  /// iteration with (seed, iteration) makes a resumed run draw the same
  /// masks as an uninterrupted one.
  void reseed(std::uint64_t seed) { reseed_tree(seed, ""); }
  bool is_training() const noexcept { return training_; }

  // ---- state ----------------------------------------------------------------------

  /// Every parameter and buffer under its dotted name, copied to the host.
  io::safetensors_archive state_dict() const {
    io::safetensors_archive a;
    for (const auto& [n, v] : named_parameters()) a.put(n, v.value());
    for_each_buffer("", true, [&](const std::string& n, const buffer_entry& b) {
      if (b.stored == io::safetensors_dtype::i64) a.put(n, cast<std::int64_t>(b.value));
      else a.put(n, b.value);
    });
    return a;
  }

  /// Loads the matching entries of `state` into the module's storage. Every
  /// matched entry is checked (shape, dtype) before anything is written; a
  /// mismatch is a shape_error / value_error naming the key and both values.
  /// With options.strict, missing or unexpected keys are a value_error.
  load_report load_state_dict(const io::safetensors_archive& state, const load_options& opt = {}) {
    struct target {
      std::string name;
      tensor_type dest;
      io::safetensors_dtype dtype;
    };
    std::vector<target> targets;
    for (const auto& [n, v] : named_parameters()) targets.push_back({n, v.value(), io::safetensors_dtype_of<T>()});
    for_each_buffer("", true,
                    [&](const std::string& n, const buffer_entry& b) { targets.push_back({n, b.value, b.stored}); });
    load_report rep;
    std::set<std::string> known;
    std::vector<std::pair<const target*, const io::safetensors_tensor*>> todo;
    for (const auto& t : targets) {
      known.insert(t.name);
      auto it = state.tensors.find(t.name);
      if (it == state.tensors.end()) {
        rep.missing.push_back(t.name);
        continue;
      }
      const auto& e = it->second;
      const shape want = t.dest.shape();
      if (e.dims != want.to_vector()) {
        std::ostringstream got;
        got << '(';
        for (std::size_t i = 0; i < e.dims.size(); ++i) got << (i ? ", " : "") << e.dims[i];
        got << (e.dims.size() == 1 ? ",)" : ")");
        ::protoseg::detail::fail<shape_error>("load_state_dict: '", t.name, "' has shape ", got.str(),
                                  " in the state, the module expects ", want);
      }
      if (e.dtype != t.dtype && !(opt.convert_dtype && is_float(e.dtype) && is_float(t.dtype)))
        ::protoseg::detail::fail<value_error>("load_state_dict: '", t.name, "' has dtype ", io::safetensors_dtype_name(e.dtype),
                                  " in the state, the module expects ", io::safetensors_dtype_name(t.dtype),
                                  is_float(e.dtype) && is_float(t.dtype) ? " (load_options::convert_dtype converts)" : "");
      todo.push_back({&t, &e});
      rep.matched.push_back(t.name);
    }
    for (const auto& [n, e] : state.tensors)
      if (!known.count(n)) rep.unexpected.push_back(n);
    std::sort(rep.matched.begin(), rep.matched.end());
    std::sort(rep.missing.begin(), rep.missing.end());
    if (opt.strict && !rep.complete()) {
      std::ostringstream os;
      os << "load_state_dict: the state does not match the module (strict):";
      if (!rep.missing.empty()) os << " missing keys " << join(rep.missing) << ";";
      if (!rep.unexpected.empty()) os << " unexpected keys " << join(rep.unexpected) << ";";
      ::protoseg::detail::fail<value_error>(os.str());
    }
    for (auto& [t, e] : todo) {
      tensor_type dest = t->dest;
      dest.copy_(convert(*e, t->name));
    }
    return rep;
  }

  /// Writes the state to a safetensors file (atomically), with `metadata`.
  void save(const std::string& path, const std::map<std::string, std::string>& metadata = {}) const {
    auto a = state_dict();
    a.metadata = metadata;
    io::write_safetensors(path, a);
  }
  /// Reads a safetensors file and loads it (see load_state_dict).
  load_report load(const std::string& path, const load_options& opt = {}) {
    return load_state_dict(io::read_safetensors(path), opt);
  }

 private:
  void reseed_tree(std::uint64_t seed, const std::string& prefix) {
    std::uint64_t h = seed ^ 0x9e3779b97f4a7c15ULL;  // FNV-1a over the name, mixed with the seed
    for (unsigned char ch : prefix) h = (h ^ ch) * 0x100000001b3ULL;
    reseed_own(h);
    for (auto& [n, c] : children_) c->reseed_tree(seed, prefix.empty() ? n : prefix + "." + n);
  }
  struct buffer_entry {
    std::string name;
    tensor_type value;
    io::safetensors_dtype stored;
  };

  static bool is_float(io::safetensors_dtype d) {
    return d == io::safetensors_dtype::f16 || d == io::safetensors_dtype::bf16 || d == io::safetensors_dtype::f32 ||
           d == io::safetensors_dtype::f64;
  }
  static std::string join(const std::vector<std::string>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", '" : "'") + v[i] + "'";
    return s + "]";
  }

  /// The entry's values as a tensor of this module's value type.
  static tensor_type convert(const io::safetensors_tensor& e, const std::string& name) {
    using io::safetensors_dtype;
    switch (e.dtype) {
      case safetensors_dtype::f64: return cast<T>(e.to_tensor<double, Policy>(name));
      case safetensors_dtype::i64: return cast<T>(e.to_tensor<std::int64_t, Policy>(name));
      default: return cast<T>(e.to_tensor<float, Policy>(name));  // F32, F16, BF16
    }
  }

  void check_new_name(const std::string& name, const char* what) const {
    if (name.empty() || name.find('.') != std::string::npos)
      ::protoseg::detail::fail<value_error>(what, ": name '", name, "' must be non-empty and contain no '.'");
    for (const auto& p : params_)
      if (p.first == name) ::protoseg::detail::fail<value_error>(what, ": '", name, "' is already a parameter");
    for (const auto& b : buffers_)
      if (b.name == name) ::protoseg::detail::fail<value_error>(what, ": '", name, "' is already a buffer");
    for (const auto& c : children_)
      if (c.first == name) ::protoseg::detail::fail<value_error>(what, ": '", name, "' is already a child module");
  }

  void collect_parameters(const std::string& prefix, bool recurse,
                          std::vector<std::pair<std::string, variable_type>>& out) const {
    for (const auto& [n, v] : params_) out.push_back({prefix + n, v});
    if (recurse)
      for (const auto& [n, c] : children_) c->collect_parameters(prefix + n + ".", true, out);
  }

  template <class F>
  void for_each_buffer(const std::string& prefix, bool recurse, F&& f) const {
    for (const auto& b : buffers_) f(prefix + b.name, b);
    if (recurse)
      for (const auto& [n, c] : children_) c->for_each_buffer(prefix + n + ".", true, f);
  }

  std::vector<std::pair<std::string, variable_type>> params_;
  std::vector<buffer_entry> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<module>>> children_;
  bool training_ = true;
};

}  // namespace protoseg::nn
