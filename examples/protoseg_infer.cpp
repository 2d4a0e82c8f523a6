// protoseg-infer: runs a trained model on an image or on every image of a
// folder and writes, for each input `<stem>`, the predicted label map
// `<stem>.png` (8-bit, one train id per pixel) and a colour overlay
// `<stem>_overlay.png` into --out.

#include <protoseg/data/image_read.hpp>

#include <algorithm>

#if defined(PROTOSEG_EXAMPLE_CUDA_PART)
#include <protoseg/cuda.hpp>
#endif

#include "common/session.hpp"

namespace ps = protoseg;
namespace ex = protoseg::examples;
namespace fs = std::filesystem;

namespace {

bool is_image(const fs::path& p) {
  auto e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".bmp";
}

template <class P>
int run(int argc, char** argv) {
  std::string weights, input, out = "runs/infer";
  double alpha = 0.5;
  ex::train_config c;
  ex::option_table t;
  t.add_string("checkpoint", &weights, "model.safetensors or checkpoint.safetensors written by protoseg-train");
  t.add_string("input", &input, "an image file or a folder of images (png, jpg, bmp)");
  t.add_string("out", &out, "output directory");
  t.add_double("alpha", &alpha, "overlay opacity of the colours", 0.0);
  ex::add_eval_options(t, c);
  ex::add_run_options(t, c);
  bool help = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    help = help || a == "--help" || a == "-h";
    if (a == "--checkpoint" && i + 1 < argc) weights = argv[i + 1];
    else if (a.rfind("--checkpoint=", 0) == 0) weights = a.substr(13);
  }
  if (help) {
    std::cout << "Usage: protoseg-infer --checkpoint FILE --input IMAGE|DIR [options]\n"
                 "Writes <stem>.png (labels) and <stem>_overlay.png for every input image.\n\n"
                 "Options [defaults]:\n";
    t.print_help(std::cout);
    return 0;
  }
  if (weights.empty()) throw ex::usage_error("--checkpoint FILE is required");
  if (!fs::exists(weights)) throw ps::io_error("--checkpoint: '" + weights + "' does not exist");
  auto file = ex::read_model_file(weights);
  const auto& state = file.model;
  c = ex::config_from_metadata(file.metadata, weights);
  t.parse(argc, argv);
  if (input.empty()) throw ex::usage_error("--input IMAGE|DIR is required");
  if constexpr (std::is_same_v<P, ps::cpu>)
    if (c.device == "cuda") return ex::cuda_main(argc, argv);  // the program's cuda half
  ex::set_threads(c.threads);
  std::cout << "device " << ex::device_description<P>() << "\n";  // a cuda run without a GPU stops here
  if (alpha > 1) throw ex::usage_error("--alpha must be in [0, 1]");

  std::vector<fs::path> files;
  if (fs::is_directory(input)) {
    for (const auto& e : fs::recursive_directory_iterator(input))
      if (e.is_regular_file() && is_image(e.path())) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) throw ps::io_error("--input: the folder '" + input + "' holds no png, jpg or bmp image");
  } else if (fs::is_regular_file(input)) {
    files.push_back(input);
  } else {
    throw ps::io_error("--input: '" + input + "' does not exist");
  }
  // The class count comes from the stored prototypes or classifier.
  std::int64_t C = 0;
  if (state.contains("proto_head.prototypes")) C = state.at("proto_head.prototypes").dims.at(0);
  else if (state.contains("decode_head.linear_pred.weight")) C = state.at("decode_head.linear_pred.weight").dims.at(0);
  else if (state.contains("decode_head.conv_seg.weight")) C = state.at("decode_head.conv_seg.weight").dims.at(0);
  else throw ps::io_error("'" + weights + "' has neither prototypes nor a classifier: not a segmentation model");
  ex::model_on<P> model(ex::model_options_of(c, C));
  ex::load_weights(model, state, weights);
  const auto palette = ps::viz::palette_for(ps::data::palette_of_kind(c.dataset), C);
  const fs::path dir(out);
  fs::create_directories(dir);
  const auto io = ex::inference_options_of(c);
  ex::progress_line bar("infer", static_cast<std::int64_t>(files.size()), 10);
  std::int64_t done = 0;
  for (const auto& f : files) {
    auto image = ps::data::read_image(f);
    auto pred = ps::models::predict(model, ex::to_input(image), io);
    ps::tensor<std::uint8_t> lab({image.size(0), image.size(1)});
    for (std::int64_t j = 0; j < lab.numel(); ++j) lab.data()[j] = static_cast<std::uint8_t>(pred.data()[j]);
    const auto stem = f.stem().string();
    ps::tensor<std::uint8_t> grey = lab.reshape({image.size(0), image.size(1), 1});
    ps::data::write_png(dir / (stem + ".png"), grey);
    ps::data::write_png(dir / (stem + "_overlay.png"),
                        ps::viz::overlay(image, ps::viz::colorize(lab, palette), alpha));
    bar.update(++done, stem);
  }
  std::cout << "wrote " << files.size() << " label maps and overlays into " << dir.string() << "\n";
  return 0;
}

}  // namespace

#if defined(PROTOSEG_EXAMPLE_CUDA_PART)
// This file compiled a second time as the program's cuda half (nvcc, or g++
// on Thrust's OpenMP system): run() on the cuda policy.
int protoseg::examples::cuda_main(int argc, char** argv) { return run<ps::cuda>(argc, argv); }
#else
int main(int argc, char** argv) { return ex::run_program("protoseg-infer", argc, argv, run<ps::cpu>); }
#endif
