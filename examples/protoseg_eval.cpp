// protoseg-eval: evaluates a trained model (model.safetensors or a
// checkpoint written by protoseg-train) on a validation split, with
// whole-image or sliding-window inference and optional multi-scale and flip
// testing. Prints mIoU / aAcc / mAcc and the per-class table, and writes
// into --out: metrics.json, confusion.csv (label rows, prediction columns)
// and predictions.png.

#include <fstream>

#if defined(PROTOSEG_EXAMPLE_CUDA_PART)
#include <protoseg/cuda.hpp>
#endif

#include "common/session.hpp"

namespace ps = protoseg;
namespace ex = protoseg::examples;
namespace fs = std::filesystem;

namespace {

template <class P>
int run(int argc, char** argv) {
  // Pass 1: the weights file, whose stored configuration gives the defaults.
  std::string weights, out = "runs/eval";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--checkpoint" && i + 1 < argc) weights = argv[i + 1];
    else if (a.rfind("--checkpoint=", 0) == 0) weights = a.substr(13);
  }
  ex::train_config c;
  ex::option_table t;
  t.add_string("checkpoint", &weights, "model.safetensors or checkpoint.safetensors written by protoseg-train");
  ex::add_data_options(t, c);
  ex::add_eval_options(t, c);
  ex::add_run_options(t, c);
  t.add_string("out", &out, "output directory");
  std::int64_t pictures = 8;
  t.add_int("pictures", &pictures, "validation images drawn in predictions.png", std::int64_t{0});
  bool help = false;
  for (int i = 1; i < argc; ++i) help = help || std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h";
  if (help) {
    std::cout << "Usage: protoseg-eval --checkpoint FILE [options]\n"
                 "Evaluates a model trained by protoseg-train on a validation split. The data set and\n"
                 "model come from the configuration stored in FILE; options override the data set and\n"
                 "the inference settings.\n\nOptions [defaults]:\n";
    t.print_help(std::cout);
    return 0;
  }
  if (weights.empty()) throw ex::usage_error("--checkpoint FILE is required");
  if (!fs::exists(weights)) throw ps::io_error("--checkpoint: '" + weights + "' does not exist");
  auto file = ex::read_model_file(weights);
  const auto& state = file.model;
  c = ex::config_from_metadata(file.metadata, weights);
  t.parse(argc, argv);  // command-line overrides
  if constexpr (std::is_same_v<P, ps::cpu>)
    if (c.device == "cuda") return ex::cuda_main(argc, argv);  // the program's cuda half
  ex::set_threads(c.threads);
  std::cout << "device " << ex::device_description<P>() << "\n";  // a cuda run without a GPU stops here

  auto val = ex::open_split(c, false);
  const std::int64_t C = val->num_classes();
  ex::model_on<P> model(ex::model_options_of(c, C));
  ex::load_weights(model, state, weights);
  std::cout << "model  " << c.model << " (" << c.head << " head) from " << weights << "\n"
            << "data   " << val->description() << "\n"
            << "mode   " << c.eval_mode << ", scales";
  for (double s : c.eval_scales) std::cout << " " << s;
  std::cout << (c.eval_flip ? ", with flip" : "") << "\n";

  auto ev = ex::evaluate(model, *val, c, pictures, true);
  ex::print_metrics(std::cout, ev.metrics, val->class_names());
  const fs::path dir(out);
  fs::create_directories(dir);
  ps::io::json_value::object extra;
  extra["checkpoint"] = ps::io::json_value(weights);
  extra["dataset"] = ps::io::json_value(c.dataset);
  extra["eval_mode"] = ps::io::json_value(c.eval_mode);
  extra["eval_seconds"] = ps::io::json_value(ev.seconds);
  ex::report_without_flip(ev, std::cout, extra);
  ex::write_text(dir / "metrics.json", ex::metrics_json(ev.metrics, val->class_names(), extra));
  std::ostringstream csv;
  csv << "label\\prediction";
  for (const auto& n : val->class_names()) csv << "," << n;
  csv << "\n";
  for (std::int64_t g = 0; g < C; ++g) {
    csv << val->class_names()[static_cast<std::size_t>(g)];
    for (std::int64_t p = 0; p < C; ++p) csv << "," << ev.confusion.at(g, p);
    csv << "\n";
  }
  ex::write_text(dir / "confusion.csv", csv.str());
  if (pictures > 0)
    ps::data::write_png(dir / "predictions.png",
                        ps::viz::prediction_grid(ev.examples, val->class_names(), ps::viz::palette_for(val->palette(), C),
                                                 "validation predictions", c.dataset == "fashion-scenes" ? 3 : 1));
  std::cout << "wrote " << (dir / "metrics.json").string() << ", confusion.csv"
            << (pictures > 0 ? ", predictions.png" : "") << "\n";
  return 0;
}

}  // namespace

#if defined(PROTOSEG_EXAMPLE_CUDA_PART)
// This file compiled a second time as the program's cuda half (nvcc, or g++
// on Thrust's OpenMP system): run() on the cuda policy.
int protoseg::examples::cuda_main(int argc, char** argv) { return run<ps::cuda>(argc, argv); }
#else
int main(int argc, char** argv) { return ex::run_program("protoseg-eval", argc, argv, run<ps::cpu>); }
#endif
