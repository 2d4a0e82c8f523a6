// protoseg-train: trains a ProtoSeg (or softmax-head) segmentation model on
// the built-in Fashion-MNIST scenes or on ADE20K / Cityscapes / COCO-Stuff /
// a folder of image-label pairs, evaluates it, and writes into --out:
//   metrics.json       mIoU, aAcc, mAcc, per-class IoU and accuracy (percent)
//   predictions.png    validation images, ground truth, predictions, errors
//   curves.png         training losses and validation mIoU over iterations
//   embedding.png      pixel embeddings and prototypes in 2-D (Fig. S1)
//   model.safetensors  weights and prototypes, with the configuration
//   checkpoint.safetensors  weights, prototypes, optimiser state, iteration (--resume)
//   log.csv, val.csv   the training log and the periodic evaluations
//   config.json        the full configuration of the run
// Every file is written atomically (write, then rename).

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <map>
#include <variant>

#if defined(PROTOSEG_EXAMPLE_CUDA_PART)
#include <protoseg/cuda.hpp>
#endif
#include <protoseg/data/loader.hpp>
#include <protoseg/optim/adamw.hpp>
#include <protoseg/optim/schedule.hpp>
#include <protoseg/optim/sgd.hpp>

#include "common/session.hpp"

namespace ps = protoseg;
namespace ex = protoseg::examples;
namespace fs = std::filesystem;

namespace {

std::atomic<bool> g_interrupted{false};
void on_signal(int) { g_interrupted = true; }  // one per translation unit (the cpu and cuda halves)

struct log_row {
  std::int64_t iter;
  double lr, loss, ce, ppc, ppd, seconds;
};
struct val_row {
  std::int64_t iter;
  double miou, aacc, macc;
};

std::string csv_log(const std::vector<log_row>& rows) {
  std::ostringstream os;
  os << "iter,lr,loss,ce,ppc,ppd,seconds\n" << std::setprecision(8);
  for (const auto& r : rows)
    os << r.iter << "," << r.lr << "," << r.loss << "," << r.ce << "," << r.ppc << "," << r.ppd << "," << r.seconds
       << "\n";
  return os.str();
}
std::string csv_val(const std::vector<val_row>& rows) {
  std::ostringstream os;
  os << "iter,mIoU,aAcc,mAcc\n" << std::setprecision(8);
  for (const auto& r : rows) os << r.iter << "," << r.miou << "," << r.aacc << "," << r.macc << "\n";
  return os.str();
}

// The logs of a run being resumed, cut at the checkpoint's iteration.
template <class Row>
std::vector<Row> read_csv(const fs::path& path, std::int64_t upto, int columns) {
  std::vector<Row> out;
  std::ifstream f(path);
  std::string line;
  if (!f || !std::getline(f, line)) return out;
  while (std::getline(f, line)) {
    std::vector<double> v;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) v.push_back(std::strtod(cell.c_str(), nullptr));
    if (static_cast<int>(v.size()) != columns || static_cast<std::int64_t>(v[0]) > upto) continue;
    if constexpr (std::is_same_v<Row, log_row>)
      out.push_back({static_cast<std::int64_t>(v[0]), v[1], v[2], v[3], v[4], v[5], v[6]});
    else
      out.push_back({static_cast<std::int64_t>(v[0]), v[1], v[2], v[3]});
  }
  return out;
}

// AdamW or SGD behind one face.
template <class P>
struct optimizer {
  std::variant<ps::optim::adamw<float, P>, ps::optim::sgd<float, P>> impl;
  void set_lr(double lr) { std::visit([&](auto& o) { o.set_lr(lr); }, impl); }
  void step() { std::visit([](auto& o) { o.step(); }, impl); }
  void zero_grad() { std::visit([](auto& o) { o.zero_grad(); }, impl); }
  ps::optim::optimizer_state<float, P> state() const {
    return std::visit([](const auto& o) { return o.state(); }, impl);
  }
  void load_state(const ps::optim::optimizer_state<float, P>& s) {
    std::visit([&](auto& o) { o.load_state(s); }, impl);
  }
};

template <class P>
optimizer<P> make_optimizer(const ex::train_config& c, ex::model_on<P>& m) {
  auto groups = ps::optim::make_param_groups(m.named_parameters(), c.head_lr_mult,
                                             {"decode_head", "proto_head"}, true);
  if (c.optimizer == "adamw") {
    ps::optim::adamw_options o;
    o.lr = c.lr;
    o.weight_decay = c.weight_decay;
    return {ps::optim::adamw<float, P>(groups, o)};
  }
  ps::optim::sgd_options o;
  o.lr = c.lr;
  o.momentum = c.momentum;
  o.weight_decay = c.weight_decay;
  return {ps::optim::sgd<float, P>(groups, o)};
}

// Loads converted backbone weights (bare names, or the backbone's entries of a
// file with "backbone." names) into the backbone, non-strict, and says what
// matched. A mis-shaped entry or an unreadable file is an error naming the file.
template <class P>
void load_pretrained(ex::model_on<P>& m, const std::string& path) {
  ps::nn::load_report rep;
  try {
    auto file = ps::io::read_safetensors(path);
    bool prefixed = false;
    for (const auto& [k, v] : file.tensors) prefixed = prefixed || k.rfind("backbone.", 0) == 0;
    ps::io::safetensors_archive state;
    std::vector<std::string> other;  // entries of a prefixed file outside the backbone
    for (auto& [k, v] : file.tensors) {
      if (!prefixed) state.tensors[k] = std::move(v);
      else if (k.rfind("backbone.", 0) == 0) state.tensors[k.substr(9)] = std::move(v);
      else other.push_back(k);
    }
    rep = m.backbone->load_state_dict(state, {.strict = false, .convert_dtype = true});
    if (prefixed) {  // report the names as the file has them
      for (auto& k : rep.missing) k = "backbone." + k;
      for (auto& k : rep.unexpected) k = "backbone." + k;
      rep.unexpected.insert(rep.unexpected.end(), other.begin(), other.end());
    }
  } catch (const std::exception& e) {
    throw ps::io_error("--pretrained '" + path + "': " + e.what());
  }
  std::cout << "pretrained: " << rep.matched.size() << " tensors loaded, " << rep.missing.size() << " missing, "
            << rep.unexpected.size() << " unexpected (from " << path << ")\n";
  auto list = [](const char* what, const std::vector<std::string>& names) {
    if (names.empty()) return;
    std::cout << "  " << what << ":";
    for (std::size_t i = 0; i < names.size() && i < 8; ++i) std::cout << " " << names[i];
    if (names.size() > 8) std::cout << " ... (" << names.size() - 8 << " more)";
    std::cout << "\n";
  };
  list("missing", rep.missing);
  list("unexpected", rep.unexpected);
  if (rep.matched.empty())
    throw ps::io_error("--pretrained '" + path +
                       "': no tensor matches the backbone (convert the weights of this --model with "
                       "tools/convert_weights.py)");
}

std::string config_json(const ex::option_table& t) { return t.to_json().dump(2); }

void print_help(const ex::option_table& t) {
  std::cout << "Usage: protoseg-train [options]\n"
               "Trains a ProtoSeg segmentation model (or the softmax-head baseline), evaluates it on the\n"
               "validation split and writes metrics.json, predictions.png, curves.png, embedding.png,\n"
               "model.safetensors and checkpoint.safetensors into --out. Defaults train on the built-in\n"
               "Fashion-MNIST scenes.\n\nOptions [defaults]:\n";
  t.print_help(std::cout);
  ex::print_fidelity_table(std::cout);
}

ps::data::train_pipeline_options pipeline_of(const ex::train_config& c) {
  ps::data::train_pipeline_options p;
  p.resize = c.random_resize;
  p.scale = {c.resize_scale[0], c.resize_scale[1]};
  p.ratio_range = {c.ratio_range[0], c.ratio_range[1]};
  p.crop_h = c.crop[0];
  p.crop_w = c.crop[1];
  p.cat_max_ratio = c.cat_max_ratio;
  p.flip = c.flip;
  p.photometric = c.photometric;
  p.mean = ex::image_mean;
  p.std = ex::image_std;
  return p;
}

// Pictures of the end of the run.
void write_curves(const fs::path& out, const std::vector<log_row>& log, const std::vector<val_row>& val) {
  namespace viz = ps::viz;
  viz::series loss{"total", {}, {}, {31, 119, 180}}, ce{"CE", {}, {}, {255, 127, 14}},
      ppc{"PPC (x weight)", {}, {}, {44, 160, 44}}, ppd{"PPD (x weight)", {}, {}, {214, 39, 40}};
  for (const auto& r : log) {
    loss.x.push_back(static_cast<double>(r.iter));
    loss.y.push_back(r.loss);
    ce.x.push_back(static_cast<double>(r.iter));
    ce.y.push_back(r.ce);
    if (r.ppc > 0) {
      ppc.x.push_back(static_cast<double>(r.iter));
      ppc.y.push_back(r.ppc);
    }
    if (r.ppd > 0) {
      ppd.x.push_back(static_cast<double>(r.iter));
      ppd.y.push_back(r.ppd);
    }
  }
  std::vector<viz::series> ls{loss, ce};
  if (!ppc.x.empty()) ls.push_back(ppc);
  if (!ppd.x.empty()) ls.push_back(ppd);
  viz::series miou{"val mIoU", {}, {}, {148, 103, 189}};
  for (const auto& r : val) {
    miou.x.push_back(static_cast<double>(r.iter));
    miou.y.push_back(r.miou);
  }
  auto left = viz::line_plot(ls, "training loss", "iteration", "loss (log scale)", true);
  auto right = viz::line_plot({miou}, "validation mIoU", "iteration", "mIoU (%)", false);
  ps::data::write_png(out / "curves.png", viz::hstack({left, right}));
}

// Fig. S1: pixel embeddings of validation images and the prototypes, in 2-D.
template <class P>
void write_embedding(const fs::path& out, ex::model_on<P>& m, const ps::data::segmentation_dataset& val,
                     const ex::train_config& c) {
  if (!m.proto_head || c.embedding == "none") return;
  const std::int64_t C = val.num_classes(), M = c.prototypes;
  const std::int64_t per_class = std::max<std::int64_t>(c.embedding_points / C, 1);
  std::vector<std::vector<std::vector<float>>> picked(static_cast<std::size_t>(C));
  const std::int64_t D = m.proto_head->embedding_dim();
  const bool was_training = m.is_training();
  m.eval();
  ps::generator gen(c.seed + 77);
  for (std::int64_t i = 0; i < val.size() && i < 200; ++i) {
    auto s = val.get(i);
    ps::no_grad guard;
    auto o = m.forward(ps::variable<float, P>(ex::on<P>(ex::to_input(s.image))));
    const std::int64_t h = o.logits.shape()[2], w = o.logits.shape()[3];
    const auto emb = o.proto.embeddings.value().template to<ps::cpu>();
    ps::tensor<std::int64_t> lab({1, s.label.size(0), s.label.size(1)});
    for (std::int64_t j = 0; j < lab.numel(); ++j) lab.data()[j] = s.label.data()[j];
    auto small = ps::proto::detail::nearest_labels(lab, h, w);
    const float* e = emb.data();
    for (std::int64_t j = 0; j < h * w; ++j) {
      const auto k = small.data()[j];
      if (k < 0 || k >= C) continue;
      auto& bucket = picked[static_cast<std::size_t>(k)];
      // Reservoir sampling keeps a uniform sample of each class's pixels.
      static thread_local std::vector<std::int64_t> seen;
      if (seen.size() != static_cast<std::size_t>(C)) seen.assign(static_cast<std::size_t>(C), 0);
      const auto n = ++seen[static_cast<std::size_t>(k)];
      std::vector<float> v(e + j * D, e + (j + 1) * D);
      if (static_cast<std::int64_t>(bucket.size()) < per_class) bucket.push_back(std::move(v));
      else if (auto r = static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(n))); r < per_class)
        bucket[static_cast<std::size_t>(r)] = std::move(v);
    }
  }
  m.train(was_training);
  std::int64_t npix = 0;
  for (const auto& b : picked) npix += static_cast<std::int64_t>(b.size());
  const std::int64_t total = npix + C * M;
  Eigen::MatrixXf X(total, D);
  std::vector<std::int64_t> labels;
  std::vector<bool> is_proto;
  std::int64_t row = 0;
  for (std::int64_t k = 0; k < C; ++k)
    for (const auto& v : picked[static_cast<std::size_t>(k)]) {
      for (std::int64_t d = 0; d < D; ++d) X(row, d) = v[static_cast<std::size_t>(d)];
      labels.push_back(k);
      is_proto.push_back(false);
      ++row;
    }
  const auto protos = m.proto_head->prototypes.template to<ps::cpu>();
  const float* p = protos.data();
  for (std::int64_t k = 0; k < C; ++k)
    for (std::int64_t j = 0; j < M; ++j) {
      for (std::int64_t d = 0; d < D; ++d) X(row, d) = p[(k * M + j) * D + d];
      labels.push_back(k);
      is_proto.push_back(true);
      ++row;
    }
  Eigen::MatrixXf Y;
  std::string how;
  if (c.embedding == "tsne") {
    std::cout << "embedding picture: t-SNE of " << total << " points ..." << std::flush;
    Y = ps::viz::tsne_2d(X, 30.0, 750, c.seed);
    how = "t-SNE";
    std::cout << " done\n";
  } else {
    Y = ps::viz::pca_2d(X);
    how = "PCA";
  }
  std::ostringstream title;
  title << "pixel embeddings (" << npix << ", dots) and prototypes (" << C * M << ", diamonds), " << how;
  ps::data::write_png(out / "embedding.png",
                      ps::viz::embedding_scatter(Y, labels, is_proto, val.class_names(),
                                                 ps::viz::palette_for(val.palette(), C), title.str()));
}

template <class P>
int run(int argc, char** argv) {
  ex::train_config c;
  ex::option_table t;
  ex::add_data_options(t, c);
  ex::add_model_options(t, c);
  t.add_string("optimizer", &c.optimizer, "adamw or sgd", {"adamw", "sgd"});
  t.add_int("iters", &c.iters, "training iterations", std::int64_t{1});
  t.add_int("batch", &c.batch, "images per batch", std::int64_t{1});
  t.add_list("crop", &c.crop, "training crop H W", 2);
  t.add_double("lr", &c.lr, "peak learning rate (poly decay to 0)", 0.0);
  t.add_double("weight-decay", &c.weight_decay, "weight decay (none on norms, biases)", 0.0);
  t.add_double("momentum", &c.momentum, "SGD momentum", 0.0);
  t.add_double("head-lr-mult", &c.head_lr_mult, "learning-rate multiplier of the decoder and head", 0.0);
  t.add_int("warmup-iters", &c.warmup_iters, "linear warmup iterations", std::int64_t{0});
  t.add_double("poly-power", &c.poly_power, "power of the poly schedule", 0.0);
  t.add_bool("random-resize", &c.random_resize, "random resize of training images (on/off)");
  t.add_list("resize-scale", &c.resize_scale, "base scale W H of the random resize", 2);
  t.add_list("ratio-range", &c.ratio_range, "ratio range of the random resize", 2);
  t.add_double("cat-max-ratio", &c.cat_max_ratio, "random crop: largest share of one class", 0.0);
  t.add_bool("flip", &c.flip, "random horizontal flips (on/off)");
  t.add_bool("photometric", &c.photometric, "photometric distortion (on/off)");
  ex::add_eval_options(t, c);
  t.add_int("eval-every", &c.eval_every, "evaluate every N iterations, 0 = only at the end", std::int64_t{0});
  ex::add_run_options(t, c);
  t.add_int("workers", &c.workers, "data loading threads", std::int64_t{1});
  t.add_string("out", &c.out, "output directory");
  t.add_string("resume", &c.resume, "checkpoint to resume from ('auto': OUT/checkpoint.safetensors)");
  t.add_string("pretrained", &c.pretrained,
               "backbone weights to start from (safetensors from tools/convert_weights.py; ignored on --resume)");
  t.add_int("checkpoint-every", &c.checkpoint_every, "write a checkpoint every N iterations, 0 = only at the end",
            std::int64_t{0});
  t.add_int("log-every", &c.log_every, "progress line every N iterations (when not a terminal)", std::int64_t{1});
  t.add_int("stop-after", &c.stop_after, "stop after this iteration as if interrupted (tests resume), 0 = never",
            std::int64_t{0});
  t.add_string("embedding", &c.embedding, "embedding picture projection: pca, tsne or none",
               {"pca", "tsne", "none"});
  t.add_int("embedding-points", &c.embedding_points, "pixel embeddings drawn in embedding.png", std::int64_t{10});
  if (!t.parse(argc, argv)) {
    print_help(t);
    return 0;
  }
  ex::apply_preset(c, t);
  if constexpr (std::is_same_v<P, ps::cpu>)
    if (c.device == "cuda") return ex::cuda_main(argc, argv);  // the program's cuda half
  if (c.resume == "auto") c.resume = (fs::path(c.out) / "checkpoint.safetensors").string();
  ex::set_threads(c.threads);
  const std::string device = ex::device_description<P>();  // a cuda run without a GPU stops here
  const fs::path out(c.out);
  fs::create_directories(out);

  auto train_set = ex::open_split(c, true);
  auto val_set = ex::open_split(c, false);
  if (train_set->num_classes() != val_set->num_classes())
    throw ps::value_error("the training split has " + std::to_string(train_set->num_classes()) +
                          " classes but the validation split has " + std::to_string(val_set->num_classes()));
  const auto& names = train_set->class_names();
  const std::int64_t C = train_set->num_classes();
  std::cout << "device " << device << "\n";
  std::cout << "data   " << train_set->description() << "\n       " << val_set->description() << "\n";

  auto model_opts = ex::model_options_of(c, C);
  model_opts.loss.class_weights = ex::class_weights_of(c, C);
  ex::model_on<P> model(model_opts);
  auto opt = make_optimizer(c, model);
  std::cout << "model  " << c.model
            << (c.model.rfind("resnet", 0) == 0 && ex::resnet_width_of(c) != 64
                    ? " (width " + std::to_string(ex::resnet_width_of(c)) + ")"
                    : std::string())
            << " + " << (model.segformer ? "SegFormer MLP decoder" : "FCN decoder") << " + "
            << (c.head == "proto" ? "ProtoSeg head (" + std::to_string(c.prototypes) + " prototypes per class)"
                                  : std::string("softmax head"))
            << ", " << model.num_parameters() << " parameters, " << C << " classes\n";
  std::cout << "       " << ex::fidelity_summary(c)
            << (c.class_weights != "none" ? ", class-weighted CE (" + c.class_weights + ")" : std::string()) << "\n";

  std::int64_t start = 0;
  std::vector<log_row> log;
  std::vector<val_row> vals;
  double seconds_before = 0;
  if (!c.resume.empty()) {
    auto ck = ps::io::load_checkpoint(c.resume);
    ex::load_weights(model, ck.model, c.resume);
    ps::optim::optimizer_state<float, P> st;
    for (const auto& [k, v] : ck.optimizer.tensors) st.emplace_back(k, v.template to_tensor<float, P>(k));
    try {
      opt.load_state(st);
    } catch (const std::exception& e) {
      throw ps::io_error("checkpoint '" + c.resume + "': its optimiser state does not match: " + e.what());
    }
    start = std::stoll(ck.metadata.at("iteration"));
    seconds_before = std::stod(ck.metadata.count("seconds") ? ck.metadata.at("seconds") : "0");
    log = read_csv<log_row>(out / "log.csv", start, 7);
    vals = read_csv<val_row>(out / "val.csv", start, 4);
    std::cout << "resume from " << c.resume << " at iteration " << start << "\n";
  } else if (!c.pretrained.empty()) {
    load_pretrained(model, c.pretrained);
  }
  ex::write_text(out / "config.json", config_json(t));

  ps::optim::poly_schedule sched;
  sched.base_lr = c.lr;
  sched.max_iters = c.iters;
  sched.power = c.poly_power;
  sched.warmup_iters = c.warmup_iters;

  auto pipeline = pipeline_of(c);
  ps::data::batch_loader_options lo;
  lo.batch_size = c.batch;
  lo.seed = c.seed;
  lo.workers = static_cast<int>(c.workers);
  auto loader = ps::data::make_train_loader(train_set, pipeline, lo, start);

  auto save_checkpoint = [&](std::int64_t iter, double seconds) {
    ps::io::checkpoint ck;
    ck.model = model.state_dict();
    for (const auto& [k, v] : opt.state()) ck.optimizer.put(k, v);
    ck.metadata["iteration"] = std::to_string(iter);
    ck.metadata["seconds"] = std::to_string(seconds);
    ck.metadata["config"] = t.to_json().dump();
    ps::io::save_checkpoint((out / "checkpoint.safetensors").string(), ck);
  };

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  model.train();
  ex::progress_line bar("train", c.iters, c.log_every, start);
  std::int64_t it = start;
  double ce_avg = 0, loss_avg = 0;
  ex::step_meter<P> meter;
  [[maybe_unused]] ex::deferred_checks<P> deferred;
  while (it < c.iters) {
    meter.begin(it);
    const double lr = sched.at(it);
    opt.set_lr(lr);
    auto b = loader.next();
    model.reseed(c.seed * 1000003ULL + static_cast<std::uint64_t>(it));
    const auto labels = ex::on<P>(b.labels);
    auto o = model.forward(ps::variable<float, P>(ex::on<P>(b.images)), labels);
    auto terms = model.loss(o, labels);
    std::vector<ps::tensor<float, P>> parts{terms.total.value(), terms.ce.value()};
    if (terms.ppc.defined()) parts.push_back(terms.ppc.value());
    if (terms.ppd.defined()) parts.push_back(terms.ppd.value());
    const auto values = ex::read_scalars(parts);  // one read of the step's losses
    const double loss = values[0];
    if (!std::isfinite(loss)) {
      bar.interrupt();
      throw ps::value_error("training diverged: the loss is " + std::to_string(loss) + " at iteration " +
                            std::to_string(it) + " (try a lower --lr)");
    }
    opt.zero_grad();
    terms.total.backward();
    opt.step();
    ++it;
    log_row r{it, lr, loss, values[1], 0, 0, seconds_before + bar.elapsed()};
    std::size_t next = 2;
    if (terms.ppc.defined()) r.ppc = c.ppc_weight * values[next++];
    if (terms.ppd.defined()) r.ppd = c.ppd_weight * values[next++];
    log.push_back(r);
    meter.end(it);
    loss_avg = it == start + 1 ? loss : 0.95 * loss_avg + 0.05 * loss;
    ce_avg = it == start + 1 ? r.ce : 0.95 * ce_avg + 0.05 * r.ce;
    std::ostringstream d;
    d << std::fixed << std::setprecision(3) << "loss " << loss_avg << " (ce " << ce_avg << ") lr "
      << std::scientific << std::setprecision(2) << lr;
    bar.update(it, d.str());
    const bool last = it == c.iters;
    if (c.eval_every > 0 && it % c.eval_every == 0 && !last) {
      bar.interrupt();
      auto ev = ex::evaluate(model, *val_set, c, 0, false);
      vals.push_back({it, 100 * ev.metrics.miou, 100 * ev.metrics.aacc, 100 * ev.metrics.macc});
      std::cout << "  eval at " << it << ": mIoU " << std::fixed << std::setprecision(2) << 100 * ev.metrics.miou
                << "  aAcc " << 100 * ev.metrics.aacc << "  (" << std::setprecision(1) << ev.seconds << " s)\n";
    }
    const bool stop = (c.stop_after > 0 && it == c.stop_after) || g_interrupted;
    if (last || stop || (c.checkpoint_every > 0 && it % c.checkpoint_every == 0)) {
      // The logs first: a run killed between the two writes then resumes
      // from the previous checkpoint with logs that reach past it (cut on
      // resume), never from a checkpoint whose last rows the logs lack.
      ex::write_text(out / "log.csv", csv_log(log));
      ex::write_text(out / "val.csv", csv_val(vals));
      save_checkpoint(it, seconds_before + bar.elapsed());
    }
    if (stop && !last) {
      bar.interrupt();
      std::cout << "stopped at iteration " << it << (g_interrupted ? " (interrupted)" : "")
                << "; resume with --resume " << (out / "checkpoint.safetensors").string() << "\n";
      return g_interrupted ? 130 : 0;
    }
  }
  const double train_seconds = seconds_before + bar.elapsed();
  std::cout << "trained " << c.iters << " iterations in " << ex::format_duration(train_seconds) << "\n";

  auto ev = ex::evaluate(model, *val_set, c, 8, true);
  vals.push_back({it, 100 * ev.metrics.miou, 100 * ev.metrics.aacc, 100 * ev.metrics.macc});
  ex::print_metrics(std::cout, ev.metrics, names);
  ps::io::json_value::object extra;
  extra["iterations"] = ps::io::json_value(c.iters);
  extra["train_seconds"] = ps::io::json_value(train_seconds);
  extra["eval_seconds"] = ps::io::json_value(ev.seconds);
  extra["model"] = ps::io::json_value(c.model);
  extra["head"] = ps::io::json_value(c.head);
  extra["dataset"] = ps::io::json_value(c.dataset);
  ex::report_without_flip(ev, std::cout, extra);
  meter.report(std::cout, extra);
  extra["device"] = ps::io::json_value(device);
  extra["validation_images"] = ps::io::json_value(ev.confusion.total() > 0 ? static_cast<std::int64_t>(
                                                      c.eval_limit > 0 ? std::min(c.eval_limit, val_set->size())
                                                                       : val_set->size())
                                                                          : std::int64_t{0});
  ex::write_text(out / "metrics.json", ex::metrics_json(ev.metrics, names, extra));
  ex::write_text(out / "val.csv", csv_val(vals));
  ex::write_text(out / "log.csv", csv_log(log));
  model.save((out / "model.safetensors").string(), {{"config", t.to_json().dump()}});
  const auto palette = ps::viz::palette_for(val_set->palette(), C);
  ps::data::write_png(out / "predictions.png",
                      ps::viz::prediction_grid(ev.examples, names, palette, "validation predictions",
                                               c.dataset == "fashion-scenes" ? 3 : 1));
  write_curves(out, log, vals);
  write_embedding(out, model, *val_set, c);
  std::cout << "wrote " << (out / "metrics.json").string() << ", predictions.png, curves.png"
            << (model.proto_head && c.embedding != "none" ? ", embedding.png" : "")
            << ", model.safetensors, checkpoint.safetensors, log.csv, val.csv\n";
  return 0;
}

}  // namespace

#if defined(PROTOSEG_EXAMPLE_CUDA_PART)
// This file compiled a second time as the program's cuda half (nvcc, or g++
// on Thrust's OpenMP system): run() on the cuda policy.
int protoseg::examples::cuda_main(int argc, char** argv) { return run<ps::cuda>(argc, argv); }
#else
int main(int argc, char** argv) { return ex::run_program("protoseg-train", argc, argv, run<ps::cpu>, true); }
#endif
