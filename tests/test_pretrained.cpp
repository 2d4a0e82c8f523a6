// Pretrained weights converted by tools/convert_weights.py (fixtures written
// by tools/gen_convert_fixtures.py): for every source layout (NVlabs MiT,
// NVlabs SegFormer checkpoint, mmsegmentation 1.x MiT, torchvision ResNet,
// mmsegmentation ResNet V1c) the converted key / dtype / shape list equals
// our model's state exactly; a tiny MiT built in mmsegmentation's structure
// loads strictly after conversion and computes PyTorch's features; and
// files with missing, extra, mis-shaped keys or truncated bytes give a
// report or a clear error, never a crash.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "common.hpp"

#include <protoseg/io/json.hpp>
#include <protoseg/io/safetensors.hpp>
#include <protoseg/models/mit.hpp>
#include <protoseg/models/model.hpp>
#include <protoseg/models/resnet.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

using namespace protoseg;
namespace fs = std::filesystem;

namespace {

constexpr double parity_rtol_float = 1e-4;  // float against the float64 PyTorch reference, of max |ref|

const std::string fixture_dir = std::string(PROTOSEG_FIXTURE_DIR) + "/convert/";

io::json_value read_json(const std::string& name) {
  std::ifstream f(fixture_dir + name);
  REQUIRE_MESSAGE(f.good(), "missing fixture ", name, " (run tools/gen_convert_fixtures.py)");
  std::stringstream ss;
  ss << f.rdbuf();
  return io::parse_json(ss.str());
}

using key_list = std::map<std::string, std::string>;  // name -> "DTYPE [d0,d1,...]"

std::string describe(const std::string& dtype, const std::vector<std::int64_t>& dims) {
  std::ostringstream os;
  os << dtype << " [";
  for (std::size_t i = 0; i < dims.size(); ++i) os << (i ? "," : "") << dims[i];
  os << "]";
  return os.str();
}

key_list keys_of_fixture(const std::string& name) {
  key_list out;
  const auto doc = read_json(name);
  for (const auto& [k, v] : doc.as_object()) {
    const auto& a = v.as_array();
    std::vector<std::int64_t> dims;
    for (const auto& d : a.at(1).as_array()) dims.push_back(d.as_integer());
    out[k] = describe(a.at(0).as_string(), dims);
  }
  return out;
}

template <class M>
key_list keys_of_model(const M& m) {
  key_list out;
  for (const auto& [k, t] : m.state_dict().tensors) {
    std::vector<std::int64_t> dims(t.dims.begin(), t.dims.end());
    out[k] = describe(io::safetensors_dtype_name(t.dtype), dims);
  }
  return out;
}

// Equal lists, with the first differences in the failure message.
void check_same_keys(const key_list& converted, const key_list& ours) {
  std::vector<std::string> only_converted, only_ours, differ;
  for (const auto& [k, d] : converted) {
    auto it = ours.find(k);
    if (it == ours.end()) only_converted.push_back(k);
    else if (it->second != d) differ.push_back(k + ": " + d + " vs ours " + it->second);
  }
  for (const auto& [k, d] : ours)
    if (!converted.count(k)) only_ours.push_back(k);
  auto first = [](const std::vector<std::string>& v) {
    std::string s;
    for (std::size_t i = 0; i < v.size() && i < 5; ++i) s += (i ? ", " : "") + v[i];
    return s;
  };
  CHECK_MESSAGE(only_converted.empty(), only_converted.size(), " converted keys the model lacks: ", first(only_converted));
  CHECK_MESSAGE(only_ours.empty(), only_ours.size(), " model keys the conversion lacks: ", first(only_ours));
  CHECK_MESSAGE(differ.empty(), differ.size(), " keys differ in dtype or shape: ", first(differ));
  CHECK(converted.size() == ours.size());
}

models::mit_options tiny_mit_options() {
  auto cfg = read_json("tiny_mit_mmseg.json").as_object().at("config").as_object();
  auto four = [&](const char* k) {
    std::array<std::int64_t, 4> a{};
    const auto& v = cfg.at(k).as_array();
    REQUIRE(v.size() == 4);
    for (int i = 0; i < 4; ++i) a[i] = v[i].as_integer();
    return a;
  };
  models::mit_options o;
  o.embed_dims = four("dims");
  o.num_heads = four("heads");
  o.depths = four("depths");
  o.sr_ratios = four("srs");
  o.drop_path_rate = 0.0;
  o.init_weights = false;
  return o;
}

const std::string tiny_file = fixture_dir + "tiny_mit_mmseg.safetensors";

// A fresh path in the temporary directory, removed at the end of the scope.
struct temp_file {
  fs::path path;
  explicit temp_file(const std::string& name)
      : path(fs::temp_directory_path() / ("protoseg_pretrained_" + std::to_string(::getpid()) + "_" + name)) {}
  ~temp_file() {
    std::error_code ec;
    fs::remove(path, ec);
  }
};

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("key map: NVlabs MiT-B0 (ImageNet file, classifier dropped) gives mix_transformer's state exactly") {
  auto o = models::mit_config("mit_b0");
  o.init_weights = false;
  models::mix_transformer<float> m(o);
  check_same_keys(keys_of_fixture("keys_nvlabs_mit_b0.json"), keys_of_model(m));
}

TEST_CASE("key map: mmsegmentation 1.x MiT-B0 (layers.i, in_proj split, 1x1 convs squeezed) gives mix_transformer's state") {
  auto o = models::mit_config("mit_b0");
  o.init_weights = false;
  models::mix_transformer<float> m(o);
  check_same_keys(keys_of_fixture("keys_mmseg_mit_b0.json"), keys_of_model(m));
}

TEST_CASE("key map: an NVlabs SegFormer-B0 checkpoint with --prefix backbone. gives the softmax-head model's state") {
  models::model_options o;
  o.backbone = "mit_b0";
  o.head = models::head_kind::softmax;
  o.num_classes = 150;  // ADE20K, as the fixture's checkpoint
  models::segmentation_model<float> m(o);
  check_same_keys(keys_of_fixture("keys_nvlabs_segformer_b0.json"), keys_of_model(m));
}

TEST_CASE("key map: torchvision ResNet-18 (fc dropped) gives resnet's state exactly") {
  auto o = models::resnet_config("resnet18");
  o.init_weights = false;
  models::resnet<float> m(o);
  check_same_keys(keys_of_fixture("keys_torchvision_resnet18.json"), keys_of_model(m));
}

TEST_CASE("key map: mmsegmentation ResNet-18 V1c (deep stem, heads dropped) gives resnet's state with deep_stem") {
  auto o = models::resnet_config("resnet18");
  o.deep_stem = true;
  o.init_weights = false;
  models::resnet<float> m(o);
  check_same_keys(keys_of_fixture("keys_mmseg_resnet18_v1c.json"), keys_of_model(m));
}

TEST_CASE("parity: a tiny MiT in mmsegmentation 1.x structure, converted, loads strictly and computes PyTorch's features") {
  models::mix_transformer<float> m(tiny_mit_options());
  auto rep = m.load(tiny_file);  // strict
  CHECK(rep.complete());
  CHECK(rep.matched.size() == m.state_dict().tensors.size());
  m.eval();

  const auto golden = read_json("tiny_mit_mmseg.json").as_object();
  std::vector<std::int64_t> in_shape;
  for (const auto& d : golden.at("input_shape").as_array()) in_shape.push_back(d.as_integer());
  REQUIRE(in_shape.size() == 4);
  std::vector<float> x(static_cast<std::size_t>(in_shape[0] * in_shape[1] * in_shape[2] * in_shape[3]));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i) + 0.1) * 0.9);
  auto input = variable<float>(tensor<float>::from_vector(x, {in_shape[0], in_shape[1], in_shape[2], in_shape[3]}));

  no_grad guard;
  auto outs = m.forward(input);
  const auto& feats = golden.at("features").as_array();
  REQUIRE(outs.size() == feats.size());
  for (std::size_t s = 0; s < outs.size(); ++s) {
    CAPTURE(s);
    const auto& f = feats[s].as_object();
    std::vector<std::int64_t> shape;
    for (const auto& d : f.at("shape").as_array()) shape.push_back(d.as_integer());
    REQUIRE(outs[s].shape().to_vector() == shape);
    const auto got = outs[s].value().to_vector();
    const auto& ref = f.at("values").as_array();
    REQUIRE(got.size() == ref.size());
    double scale = 0, err = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      scale = std::max(scale, std::abs(ref[i].as_number()));
      err = std::max(err, std::abs(double(got[i]) - ref[i].as_number()));
    }
    MESSAGE("stage ", s + 1, ": largest error ", err, ", largest |reference| ", scale);
    CHECK(err <= parity_rtol_float * scale);
  }
}

TEST_CASE("a converted file with a missing, an extra and a mis-shaped key: a report or a clear error") {
  const auto good = io::read_safetensors(tiny_file);
  const std::string removed = "block1.1.mlp.fc2.bias", extra = "head.weight", misshaped = "block2.0.attn.q.weight";
  REQUIRE(good.contains(removed));
  REQUIRE(good.contains(misshaped));

  SUBCASE("missing and extra: non-strict reports them, strict names them in a value_error") {
    auto bad = good;
    bad.tensors.erase(removed);
    bad.put(extra, tensor<float>({10, 16}));
    temp_file f("missing_extra.safetensors");
    io::write_safetensors(f.path.string(), bad);

    models::mix_transformer<float> m(tiny_mit_options());
    auto rep = m.load(f.path.string(), {.strict = false});
    CHECK(rep.missing == std::vector<std::string>{removed});
    CHECK(rep.unexpected == std::vector<std::string>{extra});
    CHECK(rep.matched.size() == good.tensors.size() - 1);
    CHECK_FALSE(rep.complete());
    // The loaded entries are the file's.
    CHECK(protoseg_test::close(m.state_dict().get<float>("block1.0.attn.q.weight"),
                               good.get<float>("block1.0.attn.q.weight"), 0.0));

    models::mix_transformer<float> strict_model(tiny_mit_options());
    try {
      strict_model.load(f.path.string());
      FAIL("strict load accepted a state with a missing and an extra key");
    } catch (const value_error& e) {
      CAPTURE(e.what());
      CHECK(contains(e.what(), removed));
      CHECK(contains(e.what(), extra));
      CHECK(contains(e.what(), "missing"));
      CHECK(contains(e.what(), "unexpected"));
    }
  }

  SUBCASE("mis-shaped: shape_error naming the key and both shapes, strict or not, nothing written") {
    auto bad = good;
    bad.put(misshaped, tensor<float>({8, 4}));
    temp_file f("misshaped.safetensors");
    io::write_safetensors(f.path.string(), bad);
    for (bool strict : {true, false}) {
      CAPTURE(strict);
      models::mix_transformer<float> m(tiny_mit_options());
      const auto before = m.state_dict().get<float>("block1.0.attn.q.weight");
      try {
        m.load(f.path.string(), {.strict = strict});
        FAIL("a mis-shaped key was accepted");
      } catch (const shape_error& e) {
        CAPTURE(e.what());
        CHECK(contains(e.what(), misshaped));
        CHECK(contains(e.what(), "(8, 4)"));
        CHECK(contains(e.what(), "(8, 8)"));
      }
      CHECK(protoseg_test::close(m.state_dict().get<float>("block1.0.attn.q.weight"), before, 0.0));
    }
  }

  SUBCASE("truncated or not a safetensors file: io_error naming the file") {
    std::ifstream in(tiny_file, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(bytes.size() > 1000);
    for (std::size_t keep : {bytes.size() - 7, bytes.size() / 2, std::size_t{100}, std::size_t{5}, std::size_t{0}}) {
      CAPTURE(keep);
      temp_file f("truncated.safetensors");
      {
        std::ofstream out(f.path, std::ios::binary);
        out.write(bytes.data(), static_cast<std::streamsize>(keep));
      }
      models::mix_transformer<float> m(tiny_mit_options());
      try {
        m.load(f.path.string(), {.strict = false});
        FAIL("a truncated file was accepted");
      } catch (const io_error& e) {
        CAPTURE(e.what());
        CHECK(contains(e.what(), f.path.string()));
      }
    }
    models::mix_transformer<float> m(tiny_mit_options());
    CHECK_THROWS_AS(m.load((fs::temp_directory_path() / "protoseg_no_such_weights.safetensors").string()), io_error);
  }
}
