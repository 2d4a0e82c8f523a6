// Tests of protoseg::optim (sgd, adamw, parameter groups, optimiser state,
// poly schedule) and protoseg::metrics (confusion matrix, mIoU / aAcc / mAcc,
// JSON summary). Golden values: tools/gen_optim_fixtures.py (PyTorch, numpy).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "common.hpp"

#include <protoseg/io/safetensors.hpp>
#include <protoseg/metrics/confusion.hpp>
#include <protoseg/optim/adamw.hpp>
#include <protoseg/optim/param_group.hpp>
#include <protoseg/optim/schedule.hpp>
#include <protoseg/optim/sgd.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

namespace ps = protoseg;
namespace optim = protoseg::optim;
namespace fs = std::filesystem;

namespace {

/// Relative tolerance of the optimiser parity with PyTorch (the brief: 1e-6 in float).
template <class T>
constexpr double parity_rtol() {
  return sizeof(T) == 4 ? 1e-6 : 1e-12;
}

ps::io::safetensors_archive fixture(const std::string& name) {
  return ps::io::read_safetensors(std::string(PROTOSEG_FIXTURE_DIR) + "/optim/" + name + ".safetensors");
}

template <class T>
const char* dname() {
  return sizeof(T) == 4 ? "f32" : "f64";
}

/// max |a - b| <= rtol * max |b|: the error relative to the tensor's scale (an
/// elementwise relative error means nothing where a value passes through 0).
template <class T>
bool rel_close(const ps::tensor<T>& a, const ps::tensor<T>& b, double rtol) {
  if (a.shape() != b.shape()) return false;
  const auto x = a.to_vector(), y = b.to_vector();
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    err = std::max(err, std::abs(double(x[i]) - double(y[i])));
    scale = std::max(scale, std::abs(double(y[i])));
  }
  if (err <= rtol * scale) return true;
  MESSAGE("max |a - b| = ", err, ", max |b| = ", scale, ", relative ", err / scale, " > ", rtol);
  return false;
}

template <class T>
bool bit_equal(const ps::tensor<T>& a, const ps::tensor<T>& b) {
  return a.shape() == b.shape() && a.to_vector() == b.to_vector();
}

/// Sets p's gradient to exactly g (loss sum(p * g)), or clears it when g is undefined.
template <class T>
void set_grad(ps::variable<T>& p, const ps::tensor<T>& g) {
  p.zero_grad();
  if (g.defined()) ps::sum(p * ps::variable<T>(g)).backward();
}

/// A fixture case's parameters (fresh leaves) and groups.
template <class T>
struct fixture_problem {
  ps::io::safetensors_archive a;
  std::vector<ps::variable<T>> params;
  std::vector<optim::param_group<T>> groups;
  std::vector<double> lr;
  std::size_t n = 0;

  explicit fixture_problem(const std::string& name) : a(fixture(name)) {
    const auto group = a.get<std::int64_t>("group").to_vector();
    const auto lr_mult = a.get<double>("lr_mult").to_vector(), decay_mult = a.get<double>("decay_mult").to_vector();
    lr = a.get<double>("lr").to_vector();
    n = group.size();
    for (std::size_t g = 0; g < lr_mult.size(); ++g) {
      std::string gname = "group";
      gname += std::to_string(g);
      groups.push_back({{}, lr_mult[g], decay_mult[g], gname});
    }
    // The flat order of the fixture is group 0's parameters, then group 1's.
    std::vector<std::size_t> order;
    for (std::size_t g = 0; g < lr_mult.size(); ++g)
      for (std::size_t k = 0; k < n; ++k)
        if (std::size_t(group[k]) == g) order.push_back(k);
    params.resize(n);
    for (std::size_t k = 0; k < n; ++k) params[k] = ps::variable<T>(a.get<T>(key("p0", k)).clone(), true);
    for (std::size_t k : order) groups[std::size_t(group[k])].params.push_back(params[k]);
    flat = order;
  }
  std::string key(const std::string& what, std::size_t k) const {
    return std::string(dname<T>()) + "." + what + "." + std::to_string(k);
  }
  std::string key(const std::string& what, int step, std::size_t k) const {
    return std::string(dname<T>()) + "." + what + "." + std::to_string(step) + "." + std::to_string(k);
  }
  ps::tensor<T> grad(int step, std::size_t k) const {
    return a.contains(key("g", step, k)) ? a.get<T>(key("g", step, k)) : ps::tensor<T>();
  }
  /// Runs steps [first, last) of the fixture on `opt` and checks every parameter after each.
  template <class Opt>
  void run(Opt& opt, int first, int last, bool check = true) {
    for (int s = first; s < last; ++s) {
      opt.set_lr(lr[std::size_t(s)]);
      for (std::size_t k = 0; k < n; ++k) set_grad(params[k], grad(s, k));
      opt.step();
      if (!check) continue;
      for (std::size_t k = 0; k < n; ++k) {
        INFO(dname<T>(), " step ", s, " parameter ", k);
        CHECK(rel_close(params[k].value(), a.get<T>(key("p", s, k)), parity_rtol<T>()));
      }
    }
  }
  std::vector<std::size_t> flat;  // flat optimiser index -> fixture parameter
};

optim::adamw_options adamw_options_of(const ps::io::safetensors_archive& a) {
  const auto& m = a.metadata;
  return {.lr = std::stod(m.at("lr")), .beta1 = std::stod(m.at("beta1")), .beta2 = std::stod(m.at("beta2")),
          .eps = std::stod(m.at("eps")), .weight_decay = std::stod(m.at("weight_decay")),
          .amsgrad = m.at("amsgrad") == "1"};
}

optim::sgd_options sgd_options_of(const ps::io::safetensors_archive& a) {
  const auto& m = a.metadata;
  return {.lr = std::stod(m.at("lr")), .momentum = std::stod(m.at("momentum")), .dampening = std::stod(m.at("dampening")),
          .weight_decay = std::stod(m.at("weight_decay")), .nesterov = m.at("nesterov") == "1"};
}

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const ps::error& e) {
    return e.what();
  }
  FAIL("expected a protoseg::error");
  return {};
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::map<std::string, ps::tensor<float>> as_map(const optim::optimizer_state<float>& s) {
  std::map<std::string, ps::tensor<float>> m;
  for (const auto& [k, t] : s) m[k] = t;
  return m;
}

}  // namespace

// ---- AdamW and SGD against PyTorch ------------------------------------------------------------

TEST_CASE_TEMPLATE("adamw: five steps with two groups, set_lr and a missing gradient match torch.optim.AdamW", T,
                   float, double) {
  for (const char* name : {"adamw", "adamw_amsgrad"}) {
    CAPTURE(name);
    fixture_problem<T> f(name);
    optim::adamw<T> opt(f.groups, adamw_options_of(f.a));
    f.run(opt, 0, 5);
    // Steps are counted per parameter, as PyTorch does: parameter 0 had no gradient once.
    // The state matches torch's optimizer.state.
    for (std::size_t i = 0; i < f.n; ++i) {
      const std::size_t k = f.flat[i];
      CAPTURE(i);
      CHECK(opt.step_count(i) == static_cast<std::int64_t>(f.a.template get<T>(f.key("state.step", k)).item()));
      CHECK(rel_close(opt.exp_avg(i), f.a.template get<T>(f.key("state.exp_avg", k)), parity_rtol<T>()));
      CHECK(rel_close(opt.exp_avg_sq(i), f.a.template get<T>(f.key("state.exp_avg_sq", k)), parity_rtol<T>()));
      if (opt.options().amsgrad)
        CHECK(rel_close(opt.max_exp_avg_sq(i), f.a.template get<T>(f.key("state.max_exp_avg_sq", k)), parity_rtol<T>()));
      else
        CHECK_FALSE(opt.max_exp_avg_sq(i).defined());
    }
    CHECK(opt.step_count(0) == 4);
  }
}

TEST_CASE_TEMPLATE("sgd: five steps with groups (momentum + dampening, nesterov) match torch.optim.SGD", T, float,
                   double) {
  for (const char* name : {"sgd_momentum", "sgd_nesterov"}) {
    CAPTURE(name);
    fixture_problem<T> f(name);
    optim::sgd<T> opt(f.groups, sgd_options_of(f.a));
    f.run(opt, 0, 5);
    for (std::size_t i = 0; i < f.n; ++i)
      CHECK(rel_close(opt.momentum_buffer(i), f.a.template get<T>(f.key("state.momentum_buffer", f.flat[i])),
                      parity_rtol<T>()));
  }
}

TEST_CASE("adamw: the tensor-operation reference agrees with the fused cpu primitive") {
  ps::generator gen(3);
  const ps::shape s{5, 7};
  auto rnd = [&] { return ps::randn<float>(s, gen); };
  for (bool ams : {false, true}) {
    auto p1 = rnd(), g = rnd(), m1 = rnd() * 0.1f, v1 = ps::abs(rnd()) * 0.01f, x1 = v1 * 1.5f;
    auto p2 = p1.clone(), m2 = m1.clone(), v2 = v1.clone(), x2 = x1.clone();
    const optim::optim_detail::adamw_scalars sc{1 - 1e-4, 0.9, 0.1, 0.999, 0.001, std::sqrt(1 - std::pow(0.999, 3)),
                                                1e-8, -0.01 / (1 - std::pow(0.9, 3))};
    optim::optim_detail::adamw_update_tensors(p1, g, m1, v1, ams ? &x1 : nullptr, sc);
    optim::optim_detail::adamw_update_host(p2.data(), g.data(), m2.data(), v2.data(), ams ? x2.data() : nullptr,
                                           p2.numel(), sc);
    CHECK(rel_close(p1, p2, 1e-6));
    CHECK(rel_close(m1, m2, 1e-6));
    CHECK(rel_close(v1, v2, 1e-6));
    CHECK(rel_close(x1, x2, 1e-6));
  }
}

TEST_CASE("adamw: one step by hand, parameters without a gradient and bad options") {
  ps::variable<double> p(ps::tensor<double>::from_vector({1.0}, {1}), true);
  ps::variable<double> q(ps::tensor<double>::from_vector({2.0}, {1}), true);
  optim::adamw<double> opt({p, q}, {.lr = 0.1});
  set_grad(p, ps::tensor<double>::from_vector({0.5}, {1}));
  opt.step();
  // p (1 - lr wd) - lr / (1 - beta1) * (1 - beta1) g / (sqrt((1 - beta2) g^2) / sqrt(1 - beta2) + eps)
  CHECK(p.value().item() == doctest::Approx(0.999 - 0.05 / (0.5 + 1e-8)).epsilon(1e-14));
  CHECK(q.value().item() == 2.0);  // no gradient: no decay either
  CHECK(opt.step_count(0) == 1);
  CHECK(opt.step_count(1) == 0);
  CHECK_FALSE(opt.exp_avg(1).defined());
  opt.zero_grad();
  CHECK_FALSE(p.has_grad());

  ps::variable<float> a(ps::tensor<float>::from_vector({1.0f}, {1}), true);
  using O = optim::adamw_options;
  for (const auto& [o, field] : std::vector<std::pair<O, std::string>>{
           {O{.lr = -1}, "lr"},
           {O{.lr = std::numeric_limits<double>::infinity()}, "lr"},
           {O{.beta1 = 1.0}, "beta1"},
           {O{.beta1 = -0.1}, "beta1"},
           {O{.beta2 = 1.5}, "beta2"},
           {O{.beta2 = std::numeric_limits<double>::quiet_NaN()}, "beta2"},
           {O{.eps = -1e-8}, "eps"},
           {O{.weight_decay = -0.01}, "weight_decay"}}) {
    const std::string msg = error_of([&] { optim::adamw<float>({a}, o); });
    CAPTURE(msg);
    CHECK(contains(msg, "adamw: " + field + " is"));
  }
  CHECK_THROWS_AS(optim::adamw<float>({a}, O{.lr = -1}), ps::value_error);
  optim::adamw<float> ok({a});
  CHECK(ok.options().weight_decay == 0.01);  // torch.optim.AdamW's defaults
  CHECK(ok.lr() == 1e-3);
  CHECK(contains(error_of([&] { ok.set_lr(-0.5); }), "adamw::set_lr: lr is -0.5"));
  CHECK(contains(error_of([&] { ok.set_lr(std::nan("")); }), "set_lr"));
  CHECK(contains(error_of([&] { optim::adamw<float>({ps::variable<float>()}); }), "parameter 0"));
}

// ---- parameter groups ---------------------------------------------------------------------------

TEST_CASE("param groups: lr and weight decay per group, duplicates and bad multipliers refused") {
  ps::variable<float> w(ps::tensor<float>::from_vector({1, 2, 3, 4}, {2, 2}), true);
  ps::variable<float> b(ps::tensor<float>::from_vector({1, 1}, {2}), true);
  optim::sgd<float> s({{{w}, 1.0, 1.0, "body"}, {{b}, 10.0, 0.0, "head"}}, {.lr = 0.1, .weight_decay = 0.5});
  CHECK(s.groups().size() == 2);
  CHECK(s.params().size() == 2);
  CHECK(s.group_lr(1) == doctest::Approx(1.0));
  s.set_lr(0.01);
  CHECK(s.lr() == 0.01);
  CHECK(s.group_lr(0) == doctest::Approx(0.01));
  CHECK(s.group_lr(1) == doctest::Approx(0.1));
  // Group lr and decay act in step(): w -= 0.01 (g + 0.5 w), b -= 0.1 g (no decay).
  set_grad(w, ps::tensor<float>::from_vector({1, 1, 1, 1}, {2, 2}));
  set_grad(b, ps::tensor<float>::from_vector({1, 1}, {2}));
  s.step();
  CHECK(protoseg_test::close(w.value(), std::vector<double>{1 - 0.01 * 1.5, 2 - 0.01 * 2, 3 - 0.01 * 2.5, 4 - 0.01 * 3}));
  CHECK(protoseg_test::close(b.value(), std::vector<double>{0.9, 0.9}));

  optim::adamw<float> a({{{w}, 1.0, 1.0, "body"}, {{b}, 2.0, 0.0, "head"}}, {.lr = 0.1, .weight_decay = 0.05});
  CHECK(a.group_weight_decay(0) == doctest::Approx(0.05));
  CHECK(a.group_weight_decay(1) == 0.0);
  CHECK(a.group_lr(1) == doctest::Approx(0.2));

  CHECK(contains(error_of([&] { optim::adamw<float>({{{w}, 1.0, 1.0, "a"}, {{w}, 1.0, 1.0, "b"}}); }),
                 "appears more than once"));
  CHECK(contains(error_of([&] { optim::sgd<float>({w, w}, {}); }), "appears more than once"));
  CHECK(contains(error_of([&] { optim::adamw<float>({{{w}, -1.0, 1.0, "neg"}}); }), "lr_mult -1"));
  CHECK(contains(error_of([&] { optim::sgd<float>({{{w}, 1.0, std::nan(""), "nan"}}, {}); }), "decay_mult"));
}

TEST_CASE("make_param_groups: mmseg's head lr_mult and no decay on norms, biases and pos_block") {
  auto v = [](std::vector<std::int64_t> dims, bool grad = true) {
    return ps::variable<float>(ps::tensor<float>(ps::shape(dims)), grad);
  };
  const std::vector<std::pair<std::string, ps::variable<float>>> named{
      {"backbone.patch_embed1.proj.weight", v({8, 3, 7, 7})},
      {"backbone.patch_embed1.proj.bias", v({8})},
      {"backbone.block1.0.norm1.weight", v({8})},
      {"backbone.block1.0.attn.q.weight", v({8, 8})},
      {"backbone.pos_block.0.proj.weight", v({8, 1, 3, 3})},
      {"backbone.layer1.0.bn1.weight", v({8})},
      {"backbone.frozen.weight", v({8, 8}, false)},
      {"decode_head.linear_fuse.conv.weight", v({8, 32, 1, 1})},
      {"decode_head.linear_fuse.bn.weight", v({8})},
      {"decode_head.conv_seg.weight", v({4, 8, 1, 1})},
      {"decode_head.conv_seg.bias", v({4})}};
  auto names_of = [&](const optim::param_group<float>& g) {
    std::vector<std::string> out;
    for (const auto& p : g.params)
      for (const auto& [n, q] : named)
        if (q.impl() == p.impl()) out.push_back(n);
    return out;
  };
  const auto groups = optim::make_param_groups(named, 10.0, {"decode_head"}, true);
  REQUIRE(groups.size() == 4);
  CHECK(groups[0].name == "decay");
  CHECK(names_of(groups[0]) == std::vector<std::string>{"backbone.patch_embed1.proj.weight", "backbone.block1.0.attn.q.weight"});
  CHECK(groups[0].lr_mult == 1.0);
  CHECK(groups[0].decay_mult == 1.0);
  CHECK(groups[1].name == "no_decay");
  CHECK(names_of(groups[1]) == std::vector<std::string>{"backbone.patch_embed1.proj.bias", "backbone.block1.0.norm1.weight",
                                                        "backbone.pos_block.0.proj.weight", "backbone.layer1.0.bn1.weight"});
  CHECK(groups[1].decay_mult == 0.0);
  CHECK(groups[2].name == "head_decay");
  CHECK(names_of(groups[2]) ==
        std::vector<std::string>{"decode_head.linear_fuse.conv.weight", "decode_head.conv_seg.weight"});
  CHECK(groups[2].lr_mult == 10.0);
  CHECK(groups[3].name == "head_no_decay");
  CHECK(names_of(groups[3]) == std::vector<std::string>{"decode_head.linear_fuse.bn.weight", "decode_head.conv_seg.bias"});
  CHECK(groups[3].lr_mult == 10.0);
  CHECK(groups[3].decay_mult == 0.0);

  // Without the no-decay rule: two groups; frozen parameters are always left out.
  const auto two = optim::make_param_groups(named, 10.0, {"decode_head"}, false);
  REQUIRE(two.size() == 2);
  CHECK(two[0].params.size() == 6);
  CHECK(two[1].params.size() == 4);
  // Without head prefixes: body groups only, and the groups drive an optimiser.
  const auto body = optim::make_param_groups(named, 10.0, {}, true);
  CHECK(body.size() == 2);
  optim::adamw<float> opt(body, {});
  CHECK(opt.params().size() == 10);

  CHECK(contains(error_of([&] { (void)optim::make_param_groups(named, -1.0, {"x"}, true); }), "head_lr_mult is -1"));
  CHECK(contains(error_of([&] { (void)optim::make_param_groups(named, 1.0, {""}, true); }), "empty head prefix"));
  auto dup = named;
  dup.push_back(named[0]);
  CHECK(contains(error_of([&] { (void)optim::make_param_groups(dup, 1.0, {}, true); }), "appears twice"));
}

TEST_CASE("make_param_groups: a prototype head's prototypes are buffers and never optimised") {
  ps::proto::prototype_head<float> head({.in_channels = 4, .num_classes = 3, .num_prototypes = 2});
  const auto groups = optim::make_param_groups(head.named_parameters(), 10.0, {"proj_head"}, true);
  std::size_t total = 0;
  for (const auto& g : groups) total += g.params.size();
  CHECK(total == head.named_parameters().size());
  const auto protos = head.named_buffers();
  REQUIRE_FALSE(protos.empty());
  for (const auto& g : groups)
    for (const auto& p : g.params)
      for (const auto& [n, t] : protos) CHECK_FALSE(p.value().shares_storage_with(t));
  // LayerNorm weights and biases are 1-D: no decay; the projection's weights are "head".
  for (const auto& g : groups) {
    CAPTURE(g.name);
    if (g.name == "no_decay") CHECK(g.params.size() == 4);  // feat_norm and mask_norm weight + bias
  }
}

// ---- optimiser state ----------------------------------------------------------------------------

TEST_CASE_TEMPLATE("state: save after 3 steps, reload into a fresh optimiser, the next steps are bit-identical", T,
                   float, double) {
  for (const char* name : {"adamw", "adamw_amsgrad", "sgd_momentum", "sgd_nesterov"}) {
    CAPTURE(name);
    const bool is_adamw = std::string(name).rfind("adamw", 0) == 0;
    fixture_problem<T> ref(name), fresh(name);
    auto run_pair = [&](auto& opt_ref, auto& opt_new) {
      ref.run(opt_ref, 0, 3);
      // Checkpoint: parameter values and optimiser state through a safetensors file.
      ps::io::safetensors_archive ck;
      for (const auto& [k, t] : opt_ref.state()) ck.put("optim." + k, t);
      const fs::path file = fs::temp_directory_path() /
                            ("protoseg_test_optim_" + std::to_string(::getpid()) + "_" + name + ".safetensors");
      ps::io::write_safetensors(file.string(), ck);
      const auto back = ps::io::read_safetensors(file.string());
      fs::remove(file);
      optim::optimizer_state<T> st;
      for (const auto& [k, t] : back.tensors) st.emplace_back(k.substr(6), back.template get<T>(k));
      for (std::size_t k = 0; k < ref.n; ++k) fresh.params[k].mutable_value().copy_(ref.params[k].value());
      opt_new.load_state(st);
      ref.run(opt_ref, 3, 5);
      fresh.run(opt_new, 3, 5, false);
      for (std::size_t k = 0; k < ref.n; ++k) CHECK(bit_equal(fresh.params[k].value(), ref.params[k].value()));
      const auto s1 = opt_ref.state(), s2 = opt_new.state();
      REQUIRE(s1.size() == s2.size());
      for (std::size_t i = 0; i < s1.size(); ++i) {
        CHECK(s1[i].first == s2[i].first);
        CHECK(bit_equal(s1[i].second, s2[i].second));
      }
    };
    if (is_adamw) {
      optim::adamw<T> a(ref.groups, adamw_options_of(ref.a)), b(fresh.groups, adamw_options_of(ref.a));
      run_pair(a, b);
    } else {
      optim::sgd<T> a(ref.groups, sgd_options_of(ref.a)), b(fresh.groups, sgd_options_of(ref.a));
      run_pair(a, b);
    }
  }
}

TEST_CASE("state: the keys, and a missing, unexpected, duplicate or misshapen entry is refused by name") {
  fixture_problem<float> f("adamw_amsgrad");
  optim::adamw<float> opt(f.groups, adamw_options_of(f.a));
  f.run(opt, 0, 3, false);
  const auto good = opt.state();
  const auto m = as_map(good);
  // Parameter 0 (flat) had no gradient at step 2: still 2 steps. Every parameter has a step.
  CHECK(m.at("step.0").item() == 2.0f);
  CHECK(m.at("step.2").item() == 3.0f);
  for (const char* k : {"exp_avg.0", "exp_avg_sq.1", "max_exp_avg_sq.2"}) CHECK(m.count(k) == 1);
  CHECK(good.size() == 3 * 4);

  auto without = [&](const std::string& key) {
    auto s = good;
    std::erase_if(s, [&](const auto& e) { return e.first == key; });
    return s;
  };
  auto with = [&](const std::string& key, ps::tensor<float> t) {
    auto s = good;
    s.emplace_back(key, t);
    return s;
  };
  auto replaced = [&](const std::string& key, ps::tensor<float> t) {
    auto s = without(key);
    s.emplace_back(key, t);
    return s;
  };
  auto msg = [&](const optim::optimizer_state<float>& s) { return error_of([&] { opt.load_state(s); }); };
  const auto before = opt.state();

  CHECK(contains(msg(without("exp_avg_sq.1")), "missing key 'exp_avg_sq.1'"));
  CHECK(contains(msg(without("step.2")), "missing key 'step.2'"));
  CHECK(contains(msg(with("momentum.0", ps::tensor<float>(ps::shape{4}))), "unexpected key 'momentum.0'"));
  CHECK(contains(msg(with("step.3", ps::tensor<float>(ps::shape{1}))), "unexpected key 'step.3'"));
  CHECK(contains(msg(with("exp_avg.01", ps::tensor<float>(ps::shape{1}))), "unexpected key 'exp_avg.01'"));
  CHECK(contains(msg(with("step.0", ps::tensor<float>(ps::shape{1}))), "key 'step.0' appears twice"));
  CHECK(contains(msg(replaced("exp_avg.0", ps::tensor<float>(ps::shape{4, 3}))), "'exp_avg.0' has shape"));
  CHECK(contains(msg(replaced("step.1", ps::tensor<float>::from_vector({1.5f}, {1}))), "'step.1' is 1.5"));
  CHECK(contains(msg(replaced("step.1", ps::tensor<float>(ps::shape{2}))), "'step.1' has shape"));
  CHECK(contains(msg(replaced("exp_avg.1", ps::tensor<float>())), "'exp_avg.1' is undefined"));
  // A parameter whose step is 0 has no moments.
  CHECK(contains(msg(replaced("step.1", ps::tensor<float>(ps::shape{1}))), "unexpected key 'exp_avg.1'"));
  // Every failure is an exception of the value_error kind and leaves the optimiser as it was.
  CHECK_THROWS_AS(opt.load_state(without("step.0")), ps::value_error);
  const auto after = opt.state();
  REQUIRE(after.size() == before.size());
  for (std::size_t i = 0; i < after.size(); ++i) CHECK(bit_equal(after[i].second, before[i].second));

  // amsgrad state into a plain AdamW and the other way round; a state of the wrong size.
  fixture_problem<float> g("adamw");
  optim::adamw<float> plain(g.groups, adamw_options_of(g.a));
  CHECK(contains(error_of([&] { plain.load_state(good); }), "unexpected key 'max_exp_avg_sq.0'"));
  f.run(opt, 3, 4, false);
  g.run(plain, 0, 1, false);
  CHECK(contains(error_of([&] { opt.load_state(plain.state()); }), "missing key 'max_exp_avg_sq.0'"));
  optim::adamw<float> small({g.params[0], g.params[1]}, adamw_options_of(f.a));
  CHECK(contains(error_of([&] { small.load_state(good); }), "unexpected key 'step.2'"));
  CHECK(contains(error_of([&] { opt.load_state(small.state()); }), "missing key 'step.2'"));

  // SGD: momentum buffers follow the steps.
  optim::sgd<float> s(g.groups, {.lr = 0.1, .momentum = 0.9});
  CHECK(as_map(s.state()).count("momentum.0") == 0);
  g.run(s, 0, 1, false);
  auto ss = s.state();
  CHECK(as_map(ss).count("momentum.0") == 1);
  std::erase_if(ss, [](const auto& e) { return e.first == "momentum.2"; });
  CHECK(contains(error_of([&] { s.load_state(ss); }), "missing key 'momentum.2'"));
  optim::sgd<float> no_mom(g.groups, {.lr = 0.1});
  CHECK(contains(error_of([&] { no_mom.load_state(s.state()); }), "unexpected key 'momentum.0'"));
}

// ---- schedules ------------------------------------------------------------------------------------

TEST_CASE("poly schedule with linear warmup matches torch LambdaLR with mmcv's formula") {
  const auto a = fixture("schedule");
  for (const char* tag : {"small", "segformer"}) {
    CAPTURE(tag);
    const auto c = a.get<double>(std::string(tag) + ".config").to_vector();
    const optim::poly_schedule s{.base_lr = c[0], .max_iters = std::int64_t(c[1]), .power = c[2], .min_lr = c[3],
                                 .warmup_iters = std::int64_t(c[4]), .warmup_ratio = c[5]};
    const auto iters = a.get<std::int64_t>(std::string(tag) + ".iters").to_vector();
    const auto lr = a.get<double>(std::string(tag) + ".lr").to_vector();
    REQUIRE(iters.size() == lr.size());
    for (std::size_t i = 0; i < iters.size(); ++i) {
      CAPTURE(iters[i]);
      CHECK(s.at(iters[i]) == doctest::Approx(lr[i]).epsilon(1e-12));
      if (iters[i] >= s.warmup_iters)
        CHECK(s.at(iters[i]) == ps::optim::poly_lr(s.base_lr, iters[i], s.max_iters, s.power, s.min_lr));
    }
  }
}

TEST_CASE("poly_lr: values by hand and bad arguments") {
  CHECK(optim::poly_lr(0.01, 0, 100) == 0.01);
  CHECK(optim::poly_lr(0.01, 50, 100) == doctest::Approx(0.005).epsilon(1e-14));
  CHECK(optim::poly_lr(0.01, 100, 100) == 0.0);
  CHECK(optim::poly_lr(0.01, 75, 100, 2.0, 1e-4) == doctest::Approx((0.01 - 1e-4) * 0.0625 + 1e-4).epsilon(1e-14));
  CHECK(optim::poly_lr(0.01, 100, 100, 0.9, 1e-4) == doctest::Approx(1e-4).epsilon(1e-14));
  const optim::poly_schedule w{.base_lr = 0.1, .max_iters = 100, .warmup_iters = 10, .warmup_ratio = 0.1};
  CHECK(w.at(0) == doctest::Approx(0.1 * 0.1).epsilon(1e-14));  // warmup_ratio * lr at iteration 0
  CHECK(w.at(5) == doctest::Approx(0.1 * 0.95 * (1 - 0.5 * 0.9)).epsilon(1e-14));
  CHECK(w.at(10) == doctest::Approx(0.09).epsilon(1e-14));  // warmup over: plain poly

  CHECK(contains(error_of([] { (void)optim::poly_lr(0.1, 0, 0); }), "max_iters is 0"));
  CHECK(contains(error_of([] { (void)optim::poly_lr(0.1, -1, 10); }), "iter is -1"));
  CHECK(contains(error_of([] { (void)optim::poly_lr(0.1, 11, 10); }), "iter is 11, expected in [0, 10]"));
  CHECK(contains(error_of([] { (void)optim::poly_lr(-0.1, 1, 10); }), "base_lr is -0.1"));
  CHECK(contains(error_of([] { (void)optim::poly_lr(0.1, 1, 10, -1.0); }), "power is -1"));
  CHECK(contains(error_of([] { (void)optim::poly_lr(0.1, 1, 10, 1.0, std::nan("")); }), "min_lr"));
  CHECK_THROWS_AS((void)optim::poly_lr(0.1, 11, 10), ps::value_error);
  CHECK(contains(error_of([] { (void)optim::poly_schedule{.base_lr = 0.1, .max_iters = 10, .warmup_iters = 11}.at(0); }),
                 "warmup_iters is 11"));
  CHECK(contains(error_of([] { (void)optim::poly_schedule{.base_lr = 0.1, .max_iters = 10, .warmup_ratio = 0}.at(0); }),
                 "warmup_ratio is 0"));
  CHECK(contains(error_of([] { (void)optim::poly_schedule{.base_lr = 0.1, .max_iters = 10}.at(12); }), "iter is 12"));
}

// ---- metrics ------------------------------------------------------------------------------------

TEST_CASE("confusion_matrix: counts and metrics match numpy (mmseg's intersect_and_union) with NaN classes") {
  const auto a = fixture("metrics");
  const std::int64_t C = std::stoll(a.metadata.at("num_classes")), ignore = std::stoll(a.metadata.at("ignore_index"));
  const auto pred = a.get<std::int64_t>("pred"), label = a.get<std::int64_t>("label");
  ps::metrics::confusion_matrix cm(C, ignore);
  cm.update(pred, label);
  const auto hist = a.get<std::int64_t>("hist").to_vector();
  CHECK(cm.counts() == hist);
  CHECK(cm.at(2, 3) == hist[2 * C + 3]);
  const auto m = cm.compute();
  const auto iou = a.get<double>("iou").to_vector(), acc = a.get<double>("acc").to_vector();
  const auto sum = a.get<double>("summary").to_vector();
  REQUIRE(m.iou.size() == std::size_t(C));
  for (std::int64_t c = 0; c < C; ++c) {
    CAPTURE(c);
    CHECK(std::isnan(m.iou[c]) == std::isnan(iou[c]));
    CHECK(std::isnan(m.acc[c]) == std::isnan(acc[c]));
    if (!std::isnan(iou[c])) CHECK(m.iou[c] == doctest::Approx(iou[c]).epsilon(1e-14));
    if (!std::isnan(acc[c])) CHECK(m.acc[c] == doctest::Approx(acc[c]).epsilon(1e-14));
  }
  // The fixture has a class in no label and no prediction (5) and one only predicted (4).
  CHECK(std::isnan(m.iou[5]));
  CHECK(m.iou[4] == 0.0);
  CHECK(std::isnan(m.acc[4]));
  CHECK(m.miou == doctest::Approx(sum[0]).epsilon(1e-14));
  CHECK(m.aacc == doctest::Approx(sum[1]).epsilon(1e-14));
  CHECK(m.macc == doctest::Approx(sum[2]).epsilon(1e-14));
  // Ignored pixels are not counted.
  const auto l = label.to_vector();
  CHECK(cm.total() == std::int64_t(l.size()) - std::count(l.begin(), l.end(), ignore));

  // Two halves merged give the same matrix; the pointer overload agrees with the tensor one.
  ps::metrics::confusion_matrix h1(C, ignore), h2(C, ignore);
  const std::int64_t n = pred.numel(), half = n / 2;
  h1.update(pred.data(), label.data(), half);
  h2.update(pred.data() + half, label.data() + half, n - half);
  h1.merge(h2);
  CHECK(h1.counts() == hist);
  const auto summed = ps::metrics::confusion_matrix::from_counts(C, ignore, hist);
  CHECK(summed.compute().miou == m.miou);
}

TEST_CASE("confusion_matrix: large inputs (per-thread histograms) equal a serial count") {
  const std::int64_t C = 19, n = 3 * 65536 + 17;
  std::vector<std::int64_t> pred(n), label(n);
  std::vector<std::int64_t> want(C * C, 0);
  std::uint64_t x = 12345;
  for (std::int64_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    pred[i] = std::int64_t((x >> 33) % C);
    label[i] = (x >> 20) % 10 == 0 ? -1 : std::int64_t((x >> 40) % C);
    if (label[i] >= 0) ++want[label[i] * C + pred[i]];
  }
  ps::metrics::confusion_matrix cm(C, -1);
  cm.update(pred.data(), label.data(), n);
  CHECK(cm.counts() == want);
  // A bad label at the very end: reported by position and value, and nothing is counted.
  label[n - 1] = 42;
  const std::string msg = error_of([&] { cm.update(pred.data(), label.data(), n); });
  CHECK(contains(msg, "label 42 at position " + std::to_string(n - 1)));
  CHECK(contains(msg, "not the ignore index -1"));
  CHECK(cm.counts() == want);
}

TEST_CASE("confusion_matrix: bad inputs and empty matrices") {
  ps::metrics::confusion_matrix cm(3);
  const std::vector<std::int64_t> p{0, 1, 3}, l{0, 1, 2}, l_bad{0, 7, 2}, l_ign{0, 255, 255}, p_neg{0, -1, 1};
  CHECK(contains(error_of([&] { cm.update(p.data(), l.data(), 3); }), "prediction 3 at position 2"));
  CHECK(contains(error_of([&] { cm.update(p_neg.data(), l_ign.data(), 3); }), "prediction -1 at position 1"));
  CHECK(contains(error_of([&] { cm.update(l.data(), l_bad.data(), 3); }), "label 7 at position 1"));
  CHECK_THROWS_AS(cm.update(l.data(), l_bad.data(), 3), ps::value_error);
  CHECK(cm.total() == 0);
  CHECK(contains(error_of([&] { cm.update(p.data(), l.data(), -1); }), "n is -1"));
  cm.update(l.data(), l_ign.data(), 3);  // only the first pixel counts
  CHECK(cm.total() == 1);
  CHECK(cm.at(0, 0) == 1);
  CHECK(contains(error_of([&] { (void)cm.at(3, 0); }), "out of range"));

  const auto t1 = ps::tensor<std::int64_t>::from_vector({0, 1, 2, 0}, {2, 2});
  const auto t2 = ps::tensor<std::int64_t>::from_vector({0, 1, 2, 0}, {4});
  CHECK_THROWS_AS(cm.update(t1, t2), ps::shape_error);
  CHECK_THROWS_AS(cm.merge(ps::metrics::confusion_matrix(4)), ps::value_error);
  CHECK(contains(error_of([&] { cm.merge(ps::metrics::confusion_matrix(3, -1)); }), "ignore index -1"));
  CHECK(contains(error_of([] { ps::metrics::confusion_matrix(0); }), "num_classes is 0"));
  CHECK(contains(error_of([] { (void)ps::metrics::confusion_matrix::from_counts(2, 255, {1, 2, 3}); }), "3 counts"));

  const auto empty = ps::metrics::confusion_matrix(4).compute();
  CHECK(std::isnan(empty.miou));
  CHECK(std::isnan(empty.aacc));
  CHECK(std::isnan(empty.macc));
  cm.reset();
  CHECK(cm.total() == 0);
}

TEST_CASE("metrics::to_json: percent values, null for NaN, class names checked") {
  ps::metrics::confusion_matrix cm(3);
  const std::vector<std::int64_t> p{0, 0, 1, 1}, l{0, 1, 1, 255};
  cm.update(p.data(), l.data(), 4);
  const auto m = cm.compute();  // iou = (1/2, 1/2, NaN), acc = (1, 1/2, NaN)
  const auto j = ps::io::parse_json(ps::metrics::to_json(m, {"road", "car", "sky"}));
  CHECK(j.find("mIoU")->as_number() == doctest::Approx(50.0));
  CHECK(j.find("aAcc")->as_number() == doctest::Approx(100.0 * 2 / 3));
  CHECK(j.find("mAcc")->as_number() == doctest::Approx(75.0));
  CHECK(j.find("per_class_iou")->find("car")->as_number() == doctest::Approx(50.0));
  CHECK(j.find("per_class_iou")->find("sky")->is_null());
  CHECK(j.find("per_class_acc")->find("road")->as_number() == doctest::Approx(100.0));
  CHECK(j.find("per_class_acc")->find("sky")->is_null());
  const auto unnamed = ps::io::parse_json(ps::metrics::to_json(m));
  CHECK(unnamed.find("per_class_iou")->find("1")->as_number() == doctest::Approx(50.0));
  CHECK(contains(error_of([&] { (void)ps::metrics::to_json(m, {"a", "b"}); }), "2 class names for 3 classes"));
  CHECK(contains(error_of([&] { (void)ps::metrics::to_json(m, {"a", "b", "a"}); }), "'a' appears twice"));
}
