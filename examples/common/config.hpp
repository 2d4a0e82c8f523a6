#pragma once
// The configuration of the example trainers (protoseg-train, -eval, -infer):
// one flat set of named options, read from a JSON config file and then from
// command-line overrides of the same names (`--lr 0.001` or `--lr=0.001`;
// JSON keys may use '-' or '_'). Every option has a help line and a default
// chosen for the built-in Fashion-MNIST scenes.

#include <protoseg/data/datasets.hpp>
#include <protoseg/models/model.hpp>
#include <protoseg/error.hpp>
#include <protoseg/io/json.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace protoseg::examples {

/// A command-line or configuration mistake: printed with the usage hint, exit 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The defaults are the main job's configuration, chosen by measurement on
/// the Fashion-MNIST scenes with 2 threads (docs/benchmarks.md).
struct train_config {
  // data
  std::string dataset = "fashion-scenes";  // fashion-scenes or a name of data::dataset_kinds()
  std::string data_root;                   // data set root (Fashion-MNIST directory for fashion-scenes)
  std::string train_split = "train";
  std::string val_split = "val";
  // Fashion-MNIST scenes: counts, size and seeds. The peer trains on 4000
  // fixed scenes; 20000 (composed from the same 60000 training garments)
  // overfit less in the main job's budget (measured: docs/benchmarks.md).
  std::int64_t scenes_train = 20000;
  std::int64_t scenes_val = 500;
  std::int64_t scene_size = 64;
  std::int64_t scene_seed_train = 1;
  std::int64_t scene_seed_val = 2;
  // model
  std::string model = "resnet18";
  std::string head = "proto";  // proto|softmax
  std::string decoder = "segformer";
  std::int64_t decoder_dim = 128;
  std::int64_t output_stride = 32;
  bool zero_init_residual = false;
  // ResNet stem channels and first-stage planes; 0: 32 on the 64x64
  // Fashion-MNIST scenes (measured: docs/benchmarks.md), the standard 64
  // on every other data set.
  std::int64_t resnet_width = 0;
  std::int64_t prototypes = 10;
  double gamma = 0.999;
  double ppc_weight = 0.01;
  double ppd_weight = 0.001;
  double drop_path = 0.1;
  // fidelity to the published code: `preset` sets this group, and any of
  // them given explicitly overrides it (apply_preset; docs/models.md). The
  // values below are those of "fast", which the main job measured best
  // (docs/benchmarks.md); "auto" is fast on fashion-scenes and published on
  // every other data set.
  std::string preset = "auto";  // auto|published|fast
  std::string projection = "bn";  // published|bn
  std::string projection_normalize = "none";  // published_width|channels|none
  double proj_dropout = 0.0;
  bool gumbel = false;
  bool ce_align_corners = false;
  std::string decoder_init = "pytorch";  // mmcv|pytorch
  bool contract_dilation = true;
  std::string class_weights = "none";  // none|cityscapes|FILE
  // optimisation
  std::string optimizer = "adamw";  // adamw|sgd
  std::int64_t iters = 10000;
  std::int64_t batch = 8;
  std::vector<std::int64_t> crop{64, 64};
  double lr = 1e-3;
  double weight_decay = 0.01;
  double momentum = 0.9;
  double head_lr_mult = 1.0;
  std::int64_t warmup_iters = 0;
  double poly_power = 1.0;
  // augmentation
  bool random_resize = false;
  std::vector<std::int64_t> resize_scale{2048, 512};
  std::vector<double> ratio_range{0.5, 2.0};
  double cat_max_ratio = 0.75;
  bool flip = true;
  bool photometric = false;
  // evaluation
  std::string eval_mode = "whole";  // whole|slide
  std::vector<std::int64_t> eval_crop{512, 512};
  std::vector<std::int64_t> eval_stride{341, 341};
  std::vector<double> eval_scales{1.0};
  bool eval_flip = true;  // the main job's; configs/ for real data sets turn it off
  std::int64_t eval_every = 1000;  // 0: only at the end
  std::int64_t eval_limit = 0;  // 0: the whole validation split
  // run
  std::uint64_t seed = 0;
  std::int64_t threads = 2;
  std::int64_t workers = 2;
  std::string device = "cpu";
  std::string out = "runs/train";
  std::string resume;
  std::string pretrained;  // backbone weights (safetensors from tools/convert_weights.py)
  std::int64_t checkpoint_every = 500;
  std::int64_t log_every = 100;
  std::int64_t stop_after = 0;  // stop (as if interrupted) after this iteration; 0: never
  std::string embedding = "pca";  // pca|tsne|none
  std::int64_t embedding_points = 1500;
};

namespace detail_config {

template <class N>
N parse_number(const std::string& name, const std::string& text) {
  N value{};
  const char* first = text.data();
  const char* last = first + text.size();
  auto [ptr, ec] = std::from_chars(first, last, value);
  if (text.empty() || ec != std::errc() || ptr != last)
    throw usage_error("--" + name + ": '" + text + "' is not a valid " +
                      (std::is_floating_point_v<N> ? "number" : "integer"));
  if constexpr (std::is_floating_point_v<N>)
    if (!std::isfinite(value)) throw usage_error("--" + name + ": '" + text + "' is not finite");
  return value;
}

inline bool parse_bool(const std::string& name, const std::string& t) {
  if (t == "on" || t == "true" || t == "1" || t == "yes") return true;
  if (t == "off" || t == "false" || t == "0" || t == "no") return false;
  throw usage_error("--" + name + ": '" + t + "' is not on/off");
}

inline std::vector<std::string> split_list(const std::string& t) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : t) {
    if (c == ',' || c == ' ') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

}  // namespace detail_config

/// One named option: how to set it from text or JSON, and how to show it.
struct option_spec {
  std::string name, help;
  int arity = 1;  // command-line words it takes (0 for flags without a value)
  std::function<void(const std::vector<std::string>&)> set_text;
  std::function<void(const io::json_value&)> set_json;
  std::function<io::json_value()> get;
};

class option_table {
 public:
  void add_string(const std::string& name, std::string* v, const std::string& help,
                  std::vector<std::string> choices = {}) {
    auto check = [name, choices, v](const std::string& t) {
      if (!choices.empty() && std::find(choices.begin(), choices.end(), t) == choices.end()) {
        std::string all;
        for (const auto& c : choices) all += (all.empty() ? "" : ", ") + c;
        throw usage_error("--" + name + ": '" + t + "' is not one of " + all);
      }
      *v = t;
    };
    specs_.push_back({name, help, 1, [check](const std::vector<std::string>& a) { check(a[0]); },
                      [check, name](const io::json_value& j) {
                        if (!j.is_string()) throw usage_error("config '" + name + "': expected a string");
                        check(j.as_string());
                      },
                      [v] { return io::json_value(*v); }});
  }
  template <class I>
  void add_int(const std::string& name, I* v, const std::string& help, I min = std::numeric_limits<I>::min()) {
    auto check = [name, v, min](long long x) {
      if (x < static_cast<long long>(min))
        throw usage_error("--" + name + ": " + std::to_string(x) + " is below the minimum " + std::to_string(min));
      *v = static_cast<I>(x);
    };
    specs_.push_back({name, help, 1,
                      [check, name](const std::vector<std::string>& a) {
                        check(detail_config::parse_number<long long>(name, a[0]));
                      },
                      [check, name](const io::json_value& j) {
                        if (!j.is_integer()) throw usage_error("config '" + name + "': expected an integer");
                        check(j.as_integer());
                      },
                      [v] { return io::json_value(static_cast<std::int64_t>(*v)); }});
  }
  void add_double(const std::string& name, double* v, const std::string& help, double min = -HUGE_VAL) {
    auto check = [name, v, min](double x) {
      if (!(x >= min)) {
        std::ostringstream os;
        os << "--" << name << ": " << x << " is below the minimum " << min;
        throw usage_error(os.str());
      }
      *v = x;
    };
    specs_.push_back({name, help, 1,
                      [check, name](const std::vector<std::string>& a) {
                        check(detail_config::parse_number<double>(name, a[0]));
                      },
                      [check, name](const io::json_value& j) {
                        if (!j.is_number()) throw usage_error("config '" + name + "': expected a number");
                        check(j.as_number());
                      },
                      [v] { return io::json_value(*v); }});
  }
  void add_bool(const std::string& name, bool* v, const std::string& help) {
    specs_.push_back({name, help, 1,
                      [v, name](const std::vector<std::string>& a) { *v = detail_config::parse_bool(name, a[0]); },
                      [v, name](const io::json_value& j) {
                        if (!j.is_bool()) throw usage_error("config '" + name + "': expected true or false");
                        *v = j.as_bool();
                      },
                      [v] { return io::json_value(*v); }});
  }
  // A list of numbers; `count` > 0 fixes its length (e.g. 2 for a crop).
  template <class N>
  void add_list(const std::string& name, std::vector<N>* v, const std::string& help, int count) {
    auto set = [name, v, count](std::vector<N> x) {
      if (count > 0 && static_cast<int>(x.size()) != count)
        throw usage_error("--" + name + ": expected " + std::to_string(count) + " values, got " +
                          std::to_string(x.size()));
      if (x.empty()) throw usage_error("--" + name + ": expected at least one value");
      *v = std::move(x);
    };
    specs_.push_back({name, help, count > 0 ? count : 1,
                      [set, name](const std::vector<std::string>& a) {
                        std::vector<N> x;
                        for (const auto& w : a)
                          for (const auto& t : detail_config::split_list(w))
                            x.push_back(detail_config::parse_number<N>(name, t));
                        set(std::move(x));
                      },
                      [set, name](const io::json_value& j) {
                        if (!j.is_array()) throw usage_error("config '" + name + "': expected an array of numbers");
                        std::vector<N> x;
                        for (const auto& e : j.as_array()) {
                          if (!e.is_number() || (std::is_integral_v<N> && !e.is_integer()))
                            throw usage_error("config '" + name + "': expected an array of " +
                                              (std::is_integral_v<N> ? "integers" : "numbers"));
                          x.push_back(static_cast<N>(std::is_integral_v<N> ? static_cast<double>(e.as_integer())
                                                                            : e.as_number()));
                        }
                        set(std::move(x));
                      },
                      [v] {
                        io::json_value::array a;
                        for (auto x : *v) {
                          if constexpr (std::is_integral_v<N>) a.emplace_back(static_cast<std::int64_t>(x));
                          else a.emplace_back(static_cast<double>(x));
                        }
                        return io::json_value(std::move(a));
                      }});
  }

  /// Whether `name` was given on the command line or in a configuration
  /// (as opposed to keeping its default).
  bool was_set(std::string name) const {
    for (auto& c : name)
      if (c == '_') c = '-';
    return std::find(set_.begin(), set_.end(), name) != set_.end();
  }

  const option_spec* find(std::string name) const {
    for (auto& c : name)
      if (c == '_') c = '-';
    for (const auto& s : specs_)
      if (s.name == name) return &s;
    return nullptr;
  }

  /// Applies every key of a JSON object (unknown keys are errors).
  void apply_json(const io::json_value& j, const std::string& where) {
    if (!j.is_object()) throw usage_error(where + ": expected a JSON object of options");
    for (const auto& [k, v] : j.as_object()) {
      const auto* s = find(k);
      if (!s) throw usage_error(where + ": unknown option '" + k + "'");
      s->set_json(v);
      set_.push_back(s->name);
    }
  }
  void apply_json_file(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw usage_error("--config: cannot read '" + path + "'");
    std::stringstream ss;
    ss << f.rdbuf();
    io::json_value j;
    try {
      j = io::parse_json(ss.str());
    } catch (const std::exception& e) {
      throw usage_error("--config '" + path + "': " + e.what());
    }
    apply_json(j, "--config '" + path + "'");
  }

  /// Parses `--name value` / `--name=value` words. `--config FILE` is applied
  /// first wherever it stands, so the other words override it. Returns false
  /// when --help was asked.
  bool parse(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    for (std::size_t i = 0; i < args.size(); ++i) {
      if (args[i] == "--help" || args[i] == "-h") return false;
      if (args[i] == "--config") {
        if (i + 1 >= args.size()) throw usage_error("--config needs a file");
        apply_json_file(args[i + 1]);
      } else if (args[i].rfind("--config=", 0) == 0) {
        apply_json_file(args[i].substr(9));
      }
    }
    for (std::size_t i = 0; i < args.size(); ++i) {
      std::string a = args[i];
      if (a.rfind("--", 0) != 0) throw usage_error("unexpected argument '" + a + "'");
      std::string name = a.substr(2), inline_value;
      bool has_inline = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_inline = true;
      }
      if (name == "config") {
        if (!has_inline) ++i;
        continue;
      }
      const auto* s = find(name);
      if (!s) throw usage_error("unknown option --" + name + " (see --help)");
      std::vector<std::string> vals;
      if (has_inline) {
        vals.push_back(inline_value);
      } else {
        for (int k = 0; k < s->arity; ++k) {
          if (i + 1 >= args.size()) throw usage_error("--" + name + " needs " + std::to_string(s->arity) + " value(s)");
          vals.push_back(args[++i]);
        }
      }
      s->set_text(vals);
      set_.push_back(s->name);
    }
    return true;
  }

  io::json_value to_json() const {
    io::json_value::object o;
    for (const auto& s : specs_) o[s.name] = s.get();
    return io::json_value(std::move(o));
  }

  void print_help(std::ostream& os) const {
    for (const auto& s : specs_) {
      auto d = s.get();
      std::string shown = d.is_string() ? d.as_string() : d.dump();
      std::string left = "  --" + s.name;
      os << std::left << std::setw(24) << left << ' ' << s.help << " [" << shown << "]\n";
    }
    os << "  --config FILE            JSON object of these options (keys with - or _); later options override it\n"
          "  --help                   this text\n";
  }

 private:
  std::vector<option_spec> specs_;
  std::vector<std::string> set_;
};

/// The options shared by the trainer and the evaluator, bound to `c`.
inline void add_model_options(option_table& t, train_config& c) {
  t.add_string("model", &c.model, "backbone: mit_b0 ... mit_b5, resnet18, resnet34, resnet50, resnet101",
               protoseg::models::backbone_names());  // every row of models::backbone_table
  t.add_string("head", &c.head, "proto (ProtoSeg prototypes) or softmax (parametric 1x1 classifier)",
               {"proto", "softmax"});
  t.add_string("decoder", &c.decoder, "auto (SegFormer MLP for MiT, FCN for ResNet), segformer or fcn",
               {"auto", "segformer", "fcn"});
  t.add_int("decoder-dim", &c.decoder_dim, "decoder width, 0 = published (256/768 SegFormer, 512 FCN)",
            std::int64_t{0});
  t.add_int("output-stride", &c.output_stride, "ResNet output stride: 8, 16 or 32", std::int64_t{8});
  t.add_bool("zero-init-residual", &c.zero_init_residual,
             "ResNet: start each residual block's last batch norm at weight 0 (on/off)");
  t.add_int("resnet-width", &c.resnet_width,
            "ResNet: stem channels and first-stage planes, stage s has width << s; 0 = 32 on fashion-scenes, "
            "the standard 64 elsewhere",
            std::int64_t{0});
  t.add_int("prototypes", &c.prototypes, "prototypes per class M", std::int64_t{1});
  t.add_double("gamma", &c.gamma, "prototype momentum", 0.0);
  t.add_double("ppc-weight", &c.ppc_weight, "weight of the pixel-prototype contrastive loss", 0.0);
  t.add_double("ppd-weight", &c.ppd_weight, "weight of the pixel-prototype distance loss", 0.0);
  t.add_double("drop-path", &c.drop_path, "MiT stochastic depth rate", 0.0);
  t.add_string("preset", &c.preset,
               "published: every item below as the published ProtoSeg code; fast: protoseg's earlier choices "
               "(the main job's: 0.4 points ahead there, within the seed noise); auto: fast on fashion-scenes, "
               "published elsewhere (docs/models.md). Items given explicitly override it",
               {"auto", "published", "fast"});
  t.add_string("projection", &c.projection,
               "projection head: published (conv-ReLU-conv, contrast.py) or bn (conv-BN-ReLU-conv, projection.py)",
               {"published", "bn"});
  t.add_string("projection-normalize", &c.projection_normalize,
               "L2 normalisation of the projection output: published_width (over the image width, as the "
               "published F.normalize(dim=-1) on NCHW), channels or none",
               {"published_width", "channels", "none"});
  t.add_double("proj-dropout", &c.proj_dropout, "Dropout2d rate before the projection head (published 0.1)", 0.0);
  t.add_bool("gumbel", &c.gumbel,
             "prototype update picks its prototype by Gumbel sampling of the Sinkhorn assignment, as published "
             "(on/off; off: the argmax)");
  t.add_bool("ce-align-corners", &c.ce_align_corners,
             "bilinear upsampling of the logits for the CE with align_corners (published on; mmseg off)");
  t.add_string("decoder-init", &c.decoder_init,
               "decoder ConvModule init: mmcv (kaiming normal fan_out, as published) or pytorch (Conv2d default)",
               {"mmcv", "pytorch"});
  t.add_bool("contract-dilation", &c.contract_dilation,
             "ResNet at output stride 8/16: the first dilated block uses half the dilation, as mmseg's -d8 "
             "configs (on/off)");
  t.add_string("class-weights", &c.class_weights,
               "CE class weights: none, cityscapes (the published Cityscapes ce_weight) or a FILE of C numbers "
               "(JSON array or whitespace separated)");
}

/// The values `--preset` gives the fidelity group.
struct preset_values {
  std::string projection, projection_normalize;
  double proj_dropout;
  bool gumbel, ce_align_corners;
  std::string decoder_init;
};
inline preset_values preset_of(const std::string& name) {
  if (name == "published") return {"published", "published_width", 0.1, true, true, "mmcv"};
  if (name == "fast") return {"bn", "none", 0.0, false, false, "pytorch"};
  throw usage_error("--preset: '" + name + "' is not one of auto, published, fast");
}

/// The table of the fidelity group for --help: item, the published code,
/// the value each preset gives, the option (docs/models.md has the long form).
inline void print_fidelity_table(std::ostream& os) {
  struct row {
    const char *item, *published, *fast, *option;
  };
  const row rows[] = {
      {"projection head", "conv-ReLU-conv (contrast.py)", "conv-BN-ReLU-conv", "--projection published|bn"},
      {"projection L2 norm", "over the width (dim=-1 of NCHW)", "none", "--projection-normalize"},
      {"dropout before projection", "Dropout2d(0.1)", "0", "--proj-dropout P"},
      {"prototype moved by update", "Gumbel sample (tau 0.5, hard)", "argmax", "--gumbel on|off"},
      {"CE upsampling", "align_corners=True", "False", "--ce-align-corners on|off"},
      {"decoder conv init", "mmcv kaiming normal fan_out", "PyTorch default", "--decoder-init mmcv|pytorch"},
      {"dilated ResNet first block", "dilation / 2 (mmseg -d8)", "(not in the preset)", "--contract-dilation on|off"},
      {"CE class weights", "Cityscapes ce_weight", "(not in the preset)", "--class-weights none|cityscapes|FILE"},
  };
  os << "\nFidelity to the published code (--preset published = the second column; the default, auto, is fast\n"
        "on fashion-scenes, where it measured best, and published on every other data set):\n";
  os << "  " << std::left << std::setw(28) << "item" << std::setw(33) << "published code" << std::setw(20)
     << "--preset fast" << "option\n";
  for (const auto& r : rows)
    os << "  " << std::setw(28) << r.item << std::setw(33) << r.published << std::setw(20) << r.fast << r.option << "\n";
  os << std::right;
}

/// One line on the fidelity group: the preset and the items that differ
/// from the published code.
inline std::string fidelity_summary(const train_config& c) {
  const auto pub = preset_of("published");
  std::string diff;
  auto add = [&](const std::string& item) { diff += (diff.empty() ? "" : ", ") + item; };
  auto onoff = [](bool b) { return std::string(b ? "on" : "off"); };
  if (c.projection != pub.projection) add("projection " + c.projection);
  if (c.projection_normalize != pub.projection_normalize) add("projection-normalize " + c.projection_normalize);
  if (c.proj_dropout != pub.proj_dropout) {
    std::ostringstream os;
    os << "proj-dropout " << c.proj_dropout;
    add(os.str());
  }
  if (c.gumbel != pub.gumbel) add("gumbel " + onoff(c.gumbel));
  if (c.ce_align_corners != pub.ce_align_corners) add("ce-align-corners " + onoff(c.ce_align_corners));
  if (c.decoder_init != pub.decoder_init) add("decoder-init " + c.decoder_init);
  if (!c.contract_dilation) add("contract-dilation off");
  return "preset " + c.preset + (diff.empty() ? ": as the published code" : ": differs from the published code in " + diff);
}

/// Gives every option of the fidelity group that `t` did not see
/// explicitly the value of c.preset.
inline void apply_preset(train_config& c, const option_table& t) {
  if (c.preset == "auto") c.preset = c.dataset == "fashion-scenes" ? "fast" : "published";
  const auto v = preset_of(c.preset);
  if (!t.was_set("projection")) c.projection = v.projection;
  if (!t.was_set("projection-normalize")) c.projection_normalize = v.projection_normalize;
  if (!t.was_set("proj-dropout")) c.proj_dropout = v.proj_dropout;
  if (!t.was_set("gumbel")) c.gumbel = v.gumbel;
  if (!t.was_set("ce-align-corners")) c.ce_align_corners = v.ce_align_corners;
  if (!t.was_set("decoder-init")) c.decoder_init = v.decoder_init;
  if (c.proj_dropout >= 1) throw usage_error("--proj-dropout: " + std::to_string(c.proj_dropout) + " is not below 1");
}

inline void add_data_options(option_table& t, train_config& c) {
  // The choices are the built-in scenes and every kind the library's data
  // set table opens (protoseg::data::dataset_kinds()).
  std::vector<std::string> kinds = {"fashion-scenes"};
  for (const auto& k : protoseg::data::dataset_kind_names()) kinds.push_back(k);
  std::string help = "data set:";
  for (std::size_t i = 0; i < kinds.size(); ++i) help += (i == 0 ? " " : i + 1 == kinds.size() ? " or " : ", ") + kinds[i];
  t.add_string("dataset", &c.dataset, help, kinds);
  t.add_string("data-root", &c.data_root, "data set root (fashion-scenes: the Fashion-MNIST directory)");
  t.add_string("train-split", &c.train_split, "training split name");
  t.add_string("val-split", &c.val_split, "validation split name");
  t.add_int("scenes-train", &c.scenes_train, "fashion-scenes: training scenes", std::int64_t{1});
  t.add_int("scenes-val", &c.scenes_val, "fashion-scenes: validation scenes", std::int64_t{1});
  t.add_int("scene-size", &c.scene_size, "fashion-scenes: scene side in pixels", std::int64_t{48});
  t.add_int("scene-seed-train", &c.scene_seed_train, "fashion-scenes: seed of the training scenes", std::int64_t{0});
  t.add_int("scene-seed-val", &c.scene_seed_val, "fashion-scenes: seed of the validation scenes", std::int64_t{0});
}

inline void add_eval_options(option_table& t, train_config& c) {
  t.add_string("eval-mode", &c.eval_mode, "whole-image or sliding-window inference", {"whole", "slide"});
  t.add_list("eval-crop", &c.eval_crop, "sliding-window size H W", 2);
  t.add_list("eval-stride", &c.eval_stride, "sliding-window stride H W", 2);
  t.add_list("eval-scales", &c.eval_scales, "test scales, e.g. 0.75,1,1.25 (multi-scale testing)", 0);
  t.add_bool("eval-flip", &c.eval_flip, "also test the flipped image (on/off)");
  t.add_int("eval-limit", &c.eval_limit, "evaluate only the first N validation images, 0 = all", std::int64_t{0});
}

inline void add_run_options(option_table& t, train_config& c) {
  t.add_int("seed", &c.seed, "random seed (initialisation, sampling, augmentation)", std::uint64_t{0});
  t.add_int("threads", &c.threads, "compute threads (OpenMP); results are deterministic for a fixed count",
            std::int64_t{1});
  t.add_string("device", &c.device, "cpu or cuda", {"cpu", "cuda"});
}

}  // namespace protoseg::examples
