#pragma once
/// \file variable.hpp
/// `variable<T, Policy>`: a tensor value with an optional gradient and the
/// graph node that produced it (reverse-mode autograd on a dynamic tape).

#include <algorithm>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "protoseg/autograd/grad_mode.hpp"
#include "protoseg/tensor/math.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg {

template <class T, class Policy>
class variable;

namespace detail {

template <class T, class P>
struct node;

template <class T, class P>
struct variable_impl {
  tensor<T, P> value;
  tensor<T, P> grad;                   // undefined until a gradient arrives
  std::shared_ptr<node<T, P>> grad_fn;  // null for leaves
  bool requires_grad = false;
  bool graph_freed = false;  // an interior result whose graph backward() released
};

/// A recorded operation: its inputs and the rule that maps the output
/// gradient to input gradients.
template <class T, class P>
struct node {
  virtual ~node() = default;
  /// Gradients for each input, in order; an undefined tensor means "none".
  virtual std::vector<tensor<T, P>> backward(const tensor<T, P>& grad_output) = 0;
  virtual const char* name() const noexcept = 0;
  /// For an op of one input: adds its input gradient into `slot` (defined,
  /// of the input's shape, held by nothing else) without materialising it,
  /// and returns true; false when the op has no such rule. Ops whose
  /// gradient is sparse (max, PPD) or can be formed in place
  /// (cross-entropy) use it so that a large input (the N x C*M prototype
  /// scores) gets one gradient buffer instead of one per consumer.
  virtual bool add_into(const tensor<T, P>&, tensor<T, P>&) { return false; }
  std::vector<std::shared_ptr<variable_impl<T, P>>> inputs;
};

/// Wraps an op struct (`forward` already run, saved state inside) as a node.
template <class T, class P, class Op>
struct op_node final : node<T, P> {
  explicit op_node(Op o) : op(std::move(o)) {}
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) override { return op.backward(g); }
  const char* name() const noexcept override { return Op::name; }
  bool add_into(const tensor<T, P>& g, tensor<T, P>& slot) override {
    if constexpr (requires(Op& o) { o.add_into(g, slot); }) {
      op.add_into(g, slot);
      return true;
    } else {
      return false;
    }
  }
  Op op;
};

}  // namespace detail

template <class T, class Policy = cpu>
class variable {
 public:
  using value_type = T;
  using policy_type = Policy;
  using tensor_type = tensor<T, Policy>;

  /// An undefined variable.
  variable() = default;
  /// A leaf holding `value`; gradients are accumulated into it when
  /// `requires_grad` is set.
  explicit variable(tensor_type value, bool requires_grad = false)
      : impl_(std::make_shared<detail::variable_impl<T, Policy>>()) {
    value.require_defined("variable");
    impl_->value = std::move(value);
    impl_->requires_grad = requires_grad;
  }

  bool defined() const noexcept { return impl_ != nullptr; }
  const tensor_type& value() const { return checked().value; }
  /// The value for in-place updates by optimisers (never recorded).
  tensor_type& mutable_value() { return checked().value; }
  const protoseg::shape& shape() const { return checked().value.shape(); }
  int rank() const { return value().rank(); }
  std::int64_t numel() const { return value().numel(); }

  bool requires_grad() const { return checked().requires_grad; }
  /// Marks a leaf as requiring (or not) gradients.
  variable& requires_grad_(bool on = true) {
    if (checked().grad_fn)
      detail::fail<autograd_error>("requires_grad_: only leaves can change requires_grad");
    impl_->requires_grad = on;
    return *this;
  }
  bool is_leaf() const { return checked().grad_fn == nullptr; }
  /// The accumulated gradient (undefined before the first backward).
  const tensor_type& grad() const { return checked().grad; }
  bool has_grad() const { return checked().grad.defined(); }
  /// Forgets the accumulated gradient.
  void zero_grad() { checked().grad = tensor_type(); }
  /// Name of the operation that produced this variable ("" for a leaf).
  std::string grad_fn_name() const { return checked().grad_fn ? checked().grad_fn->name() : ""; }

  /// A new leaf with the same value and no history.
  variable detach() const { return variable(value(), false); }

  /// Back-propagates from this scalar variable (gradient 1).
  void backward() const {
    if (numel() != 1)
      detail::fail<autograd_error>("backward: the root has shape ", shape(),
                                   "; backward() without a gradient needs a single-element root");
    backward(full<T, Policy>(shape(), T(1)));
  }
  /// Back-propagates `grad_output` (same shape as the value). Gradients of
  /// leaves are accumulated; the graph is freed afterwards.
  void backward(const tensor_type& grad_output) const;

  const std::shared_ptr<detail::variable_impl<T, Policy>>& impl() const noexcept { return impl_; }

  /// A result of an operation (used by `detail::record`).
  static variable from_node(tensor_type value, std::shared_ptr<detail::node<T, Policy>> fn) {
    variable v(std::move(value), true);
    v.impl_->grad_fn = std::move(fn);
    return v;
  }

 private:
  detail::variable_impl<T, Policy>& checked() const {
    if (!impl_) detail::fail<value_error>("variable: the variable is undefined (default-constructed)");
    return *impl_;
  }
  std::shared_ptr<detail::variable_impl<T, Policy>> impl_;
};

namespace detail {

/// Records `op` (whose forward produced `out`) on the tape when gradients are
/// enabled and any input needs one; otherwise returns a plain result.
template <class T, class P, class Op, class... Vars>
variable<T, P> record(tensor<T, P> out, Op op, const Vars&... inputs) {
  const bool need = grad_enabled() && (inputs.requires_grad() || ...);
  if (!need) return variable<T, P>(std::move(out), false);
  auto n = std::make_shared<op_node<T, P, Op>>(std::move(op));
  n->inputs = {inputs.impl()...};
  return variable<T, P>::from_node(std::move(out), std::move(n));
}

/// Same, for an op with a run-time list of inputs (concat).
template <class T, class P, class Op>
variable<T, P> record_list(tensor<T, P> out, Op op, const std::vector<variable<T, P>>& inputs) {
  bool need = false;
  for (const auto& v : inputs) need = need || v.requires_grad();
  if (!grad_enabled() || !need) return variable<T, P>(std::move(out), false);
  auto n = std::make_shared<op_node<T, P, Op>>(std::move(op));
  for (const auto& v : inputs) n->inputs.push_back(v.impl());
  return variable<T, P>::from_node(std::move(out), std::move(n));
}

/// Adds g into a gradient slot. The first gradient is taken over without a
/// copy when nothing else holds its storage (a fresh result of an op's
/// backward); one shared with another slot or a saved tensor is copied, so
/// that slots never alias. Later gradients are added in place when the slot
/// is the only holder of its storage (no third buffer of the same size).
template <class T, class P>
void accumulate(tensor<T, P>& into, tensor<T, P>&& g) {
  if (into.defined()) {
    if (into.sole_owner() && into.shape() == g.shape())
      backend::elementwise<P>::zip(into.data(), g.data(), into.data(), into.numel(), fn::plus{});
    else into = into + g;
  } else if (g.sole_owner()) {
    into = std::move(g);
  } else {
    into = g.clone();
  }
}

}  // namespace detail

template <class T, class Policy>
void variable<T, Policy>::backward(const tensor_type& grad_output) const {
  using impl_t = detail::variable_impl<T, Policy>;
  auto& root = checked();
  if (root.graph_freed)
    detail::fail<autograd_error>("backward: the graph of this variable was already freed by an earlier backward()");
  if (!root.requires_grad)
    detail::fail<autograd_error>("backward: the variable does not require gradients (no input requires_grad, "
                                 "or it was computed under no_grad)");
  if (grad_output.shape() != root.value.shape())
    detail::fail<shape_error>("backward: grad_output has shape ", grad_output.shape(), ", expected ",
                              root.value.shape());

  // Topological order by iterative depth-first search (no recursion limit).
  // `order` owns the results: freeing a node must not destroy a result
  // that is still waiting for its gradient.
  std::vector<std::shared_ptr<impl_t>> order;
  std::unordered_map<impl_t*, int> state;  // 1 = on stack, 2 = done
  std::vector<std::pair<std::shared_ptr<impl_t>, std::size_t>> stack{{impl_, 0}};
  state[impl_.get()] = 1;
  while (!stack.empty()) {
    impl_t* v = stack.back().first.get();
    std::size_t& next = stack.back().second;
    if (v->grad_fn && next < v->grad_fn->inputs.size()) {
      std::shared_ptr<impl_t> child = v->grad_fn->inputs[next++];
      if (child->requires_grad && !state.count(child.get())) {
        if (child->graph_freed)
          detail::fail<autograd_error>("backward: part of the graph was freed by an earlier backward()");
        state[child.get()] = 1;
        stack.push_back({std::move(child), 0});
      }
      continue;
    }
    state[v] = 2;
    order.push_back(std::move(stack.back().first));
    stack.pop_back();
  }

  std::unordered_map<impl_t*, tensor_type> pending;
  pending[impl_.get()] = grad_output;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    impl_t* v = it->get();
    auto found = pending.find(v);
    if (found == pending.end()) continue;
    tensor_type g = std::move(found->second);
    pending.erase(found);
    if (!v->grad_fn) {
      detail::accumulate(v->grad, std::move(g));
      continue;
    }
    auto& ins = v->grad_fn->inputs;
    if (ins.size() == 1 && ins[0]->requires_grad) {
      auto slot = pending.find(ins[0].get());
      if (slot != pending.end() && slot->second.defined() && slot->second.sole_owner() &&
          slot->second.shape() == ins[0]->value.shape() && v->grad_fn->add_into(g, slot->second)) {
        v->grad_fn.reset();
        v->graph_freed = true;
        continue;
      }
    }
    std::vector<tensor_type> grads = v->grad_fn->backward(g);
    g = tensor_type();  // a gradient that is a view of g (reshape) is then taken over without a copy
    for (std::size_t i = 0; i < ins.size() && i < grads.size(); ++i) {
      if (!ins[i]->requires_grad || !grads[i].defined()) continue;
      if (grads[i].shape() != ins[i]->value.shape())
        detail::fail<autograd_error>("backward: ", v->grad_fn->name(), " returned a gradient of shape ",
                                     grads[i].shape(), " for an input of shape ", ins[i]->value.shape());
      auto& slot = pending[ins[i].get()];
      detail::accumulate(slot, std::move(grads[i]));
    }
    // Free the graph: interior results drop their node and saved tensors.
    v->grad_fn.reset();
    v->graph_freed = true;
  }
}

}  // namespace protoseg
