// End-to-end tests of the example trainers (protoseg-train, protoseg-eval,
// protoseg-infer): short runs on the Fashion-MNIST scenes and on small trees
// in the exact ADE20K and Cityscapes layouts; resume gives the same weights
// as an uninterrupted run; bad input gives a clear message and a non-zero
// exit without destroying what was written before.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "common.hpp"

#include <protoseg/data/image_write.hpp>
#include <protoseg/io/checkpoint.hpp>
#include <protoseg/io/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#if defined(PROTOSEG_TRAIN_EXE)

namespace fs = std::filesystem;
namespace ps = protoseg;

namespace {

struct result {
  int status = -1;
  std::string output;  // stdout and stderr together
};

// Runs a trainer with arguments (quoted for the shell), capturing its output.
result run(const std::string& exe, const std::vector<std::string>& args) {
  std::string cmd = "'" + exe + "'";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>&1";
  result r;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

fs::path work_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("protoseg_trainers_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A small RGB test image with some structure, and a label map whose values
// follow it (so a model can learn something in a few steps).
ps::tensor<std::uint8_t> make_image(std::int64_t h, std::int64_t w, int seed) {
  ps::tensor<std::uint8_t> im({h, w, 3});
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        im.data()[(y * w + x) * 3 + c] = static_cast<std::uint8_t>((x * 3 + y * (c + 1) + seed * 37) % 256);
  return im;
}
ps::tensor<std::uint8_t> make_label(std::int64_t h, std::int64_t w, int seed, int lo, int hi) {
  ps::tensor<std::uint8_t> l({h, w, 1});
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x)
      l.data()[y * w + x] = static_cast<std::uint8_t>(lo + ((x / 16 + y / 16 + seed) % (hi - lo + 1)));
  return l;
}
void write_jpg(const fs::path& p, const ps::tensor<std::uint8_t>& im) {
  fs::create_directories(p.parent_path());
  REQUIRE(stbi_write_jpg(p.c_str(), static_cast<int>(im.size(1)), static_cast<int>(im.size(0)), 3, im.data(), 95) != 0);
}
void write_png_at(const fs::path& p, const ps::tensor<std::uint8_t>& im) {
  fs::create_directories(p.parent_path());
  ps::data::write_png(p, im);
}

// The rows of a run's log.csv without the seconds column (equal for a run
// and its resumed twin).
std::vector<std::string> logged_losses(const fs::path& log_csv) {
  std::vector<std::string> rows;
  std::stringstream ss(read_all(log_csv));
  std::string line;
  while (std::getline(ss, line)) rows.push_back(line.substr(0, line.rfind(',')));
  return rows;
}

// The tensors of two checkpoints are equal byte for byte.
void check_same_state(const fs::path& a, const fs::path& b) {
  auto x = ps::io::read_safetensors(a.string()), y = ps::io::read_safetensors(b.string());
  REQUIRE(x.tensors.size() == y.tensors.size());
  for (const auto& [k, t] : x.tensors) {
    INFO(k);
    REQUIRE(y.contains(k));
    CHECK(t.dims == y.at(k).dims);
    CHECK(t.bytes == y.at(k).bytes);
  }
}

const std::vector<std::string> tiny_model{"--model", "mit_b0", "--decoder-dim", "32", "--prototypes", "3",
                                          "--threads", "1", "--workers", "2", "--log-every", "1"};
std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST_CASE("--resnet-width 0 is 32 on the Fashion-MNIST scenes, eval rebuilds that width from the weights") {
  const auto dir = work_dir("width");
  const std::vector<std::string> small{"--model", "resnet18", "--decoder-dim", "16", "--prototypes", "2",
                                       "--threads", "1", "--workers", "1", "--scenes-train", "8", "--scenes-val", "2",
                                       "--iters", "1", "--batch", "2", "--eval-every", "0", "--embedding", "none"};
  auto r = run(PROTOSEG_TRAIN_EXE, with(small, {"--out", (dir / "auto").string()}));
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK(r.output.find("model  resnet18 (width 32) + ") != std::string::npos);
  auto e = run(PROTOSEG_EVAL_EXE, {"--checkpoint", (dir / "auto" / "model.safetensors").string(), "--out",
                                   (dir / "eval").string(), "--threads", "1"});
  INFO(e.output);
  CHECK(e.status == 0);
  r = run(PROTOSEG_TRAIN_EXE, with(small, {"--out", (dir / "std").string(), "--resnet-width", "64"}));
  REQUIRE(r.status == 0);
  CHECK(r.output.find("model  resnet18 + ") != std::string::npos);
}

TEST_CASE("--preset published|fast sets the fidelity group, explicit items override it, old weights still load") {
  const auto dir = work_dir("preset");
  const std::vector<std::string> small{"--model", "resnet18", "--decoder-dim", "16", "--prototypes", "2",
                                       "--threads", "1", "--workers", "1", "--scenes-train", "8", "--scenes-val", "2",
                                       "--iters", "2", "--batch", "2", "--eval-every", "0", "--embedding", "none"};
  auto h = run(PROTOSEG_TRAIN_EXE, {"--help"});
  CHECK(h.status == 0);
  CHECK(h.output.find("Fidelity to the published code") != std::string::npos);
  CHECK(h.output.find("Gumbel sample (tau 0.5, hard)") != std::string::npos);
  CHECK(h.output.find("--class-weights none|cityscapes|FILE") != std::string::npos);
  auto r = run(PROTOSEG_TRAIN_EXE, with(small, {"--out", (dir / "published").string(), "--preset", "published"}));
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK(r.output.find("preset published: as the published code") != std::string::npos);
  auto st = ps::io::read_safetensors((dir / "published" / "model.safetensors").string());
  CHECK(st.contains("proto_head.proj_head.proj.2.weight"));
  CHECK_FALSE(st.contains("proto_head.proj_head.proj.1.0.weight"));  // no BN in the published projection

  // The default, auto, is fast on the Fashion-MNIST scenes (the main job's measured best).
  r = run(PROTOSEG_TRAIN_EXE, with(small, {"--out", (dir / "fast").string()}));
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK(r.output.find("preset fast: differs from the published code in projection bn, projection-normalize none, "
                      "proj-dropout 0, gumbel off, ce-align-corners off, decoder-init pytorch") != std::string::npos);
  st = ps::io::read_safetensors((dir / "fast" / "model.safetensors").string());
  CHECK(st.contains("proto_head.proj_head.proj.1.0.weight"));
  const auto cfg = ps::io::parse_json(st.metadata.at("config"));
  CHECK(cfg.find("projection")->as_string() == "bn");
  CHECK(cfg.find("gumbel")->as_bool() == false);

  // An item given explicitly wins over the preset, before or after it.
  r = run(PROTOSEG_TRAIN_EXE,
          with(small, {"--gumbel", "on", "--out", (dir / "mixed").string(), "--preset", "fast", "--iters", "1"}));
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK(r.output.find("preset fast: differs from the published code in projection bn") != std::string::npos);
  CHECK(r.output.find("gumbel off") == std::string::npos);

  // Weights written before these options existed (no 'projection' in their
  // stored configuration) load as the model they were: BN projection.
  {
    auto old = ps::io::read_safetensors((dir / "fast" / "model.safetensors").string());
    auto j = ps::io::parse_json(old.metadata.at("config"));
    ps::io::json_value::object o = j.as_object();
    for (const char* k : {"preset", "projection", "projection-normalize", "proj-dropout", "gumbel", "ce-align-corners",
                          "decoder-init", "contract-dilation", "class-weights"})
      o.erase(k);
    old.metadata["config"] = ps::io::json_value(std::move(o)).dump();
    ps::io::write_safetensors((dir / "old.safetensors").string(), old);
  }
  auto e = run(PROTOSEG_EVAL_EXE, {"--checkpoint", (dir / "old.safetensors").string(), "--out",
                                   (dir / "eval_old").string(), "--threads", "1"});
  INFO(e.output);
  CHECK(e.status == 0);

  // Class weights: the Cityscapes ones need 19 classes; a file is read and checked.
  r = run(PROTOSEG_TRAIN_EXE, with(small, {"--out", (dir / "w").string(), "--class-weights", "cityscapes"}));
  CHECK(r.status == 2);
  CHECK(r.output.find("--class-weights cityscapes: 19 weights for a data set of") != std::string::npos);
  {
    std::ofstream f(dir / "w.txt");
    f << "1 2 3\n";
  }
  r = run(PROTOSEG_TRAIN_EXE, with(small, {"--out", (dir / "w").string(), "--class-weights", (dir / "w.txt").string()}));
  CHECK(r.status == 2);
  CHECK(r.output.find("w.txt': 3 weights for a data set of") != std::string::npos);
  {
    std::ofstream f(dir / "w.txt");
    f << "1, 2, x\n";
  }
  r = run(PROTOSEG_TRAIN_EXE, with(small, {"--out", (dir / "w").string(), "--class-weights", (dir / "w.txt").string()}));
  CHECK(r.status == 2);
  CHECK(r.output.find("'x' is not a number") != std::string::npos);
  r = run(PROTOSEG_TRAIN_EXE, with(small, {"--out", (dir / "w").string(), "--class-weights", (dir / "none.txt").string()}));
  CHECK(r.status == 2);
  CHECK(r.output.find("cannot read the file") != std::string::npos);
  r = run(PROTOSEG_TRAIN_EXE, with(small, {"--out", (dir / "w").string(), "--preset", "slow"}));
  CHECK(r.status == 2);
  CHECK(r.output.find("--preset: 'slow' is not one of auto, published, fast") != std::string::npos);
  r = run(PROTOSEG_TRAIN_EXE, with(small, {"--out", (dir / "w").string(), "--proj-dropout", "1"}));
  CHECK(r.status == 2);
  CHECK(r.output.find("--proj-dropout") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("protoseg-train on Fashion-MNIST scenes writes metrics, pictures, weights, eval and infer read them") {
  const auto dir = work_dir("fashion");
  const auto out = dir / "run";
  auto r = run(PROTOSEG_TRAIN_EXE, with(tiny_model, {"--scenes-train", "40", "--scenes-val", "6", "--iters", "4",
                                                     "--batch", "2", "--out", out.string(), "--eval-every", "2"}));
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK(r.output.find("train 4/4") != std::string::npos);
  CHECK(r.output.find("it/s") != std::string::npos);
  for (const char* f : {"metrics.json", "predictions.png", "curves.png", "embedding.png", "model.safetensors",
                        "checkpoint.safetensors", "log.csv", "val.csv", "config.json"})
    CHECK_MESSAGE(fs::is_regular_file(out / f), f);
  const auto m = ps::io::parse_json(read_all(out / "metrics.json"));
  for (const char* k : {"mIoU", "aAcc", "mAcc", "per_class_iou"}) CHECK_MESSAGE(m.find(k) != nullptr, k);
  CHECK(m.find("per_class_iou")->as_object().size() == 11);
  CHECK(m.find("per_class_iou")->as_object().count("Trouser") == 1);
  const double miou = m.find("mIoU")->as_number();
  CHECK(miou >= 0.0);
  CHECK(miou <= 100.0);
  // Flip testing is the default: the unflipped figures come along.
  REQUIRE(m.find("without_flip") != nullptr);
  CHECK(m.find("without_flip")->find("mIoU") != nullptr);
  CHECK(r.output.find("without flip: mIoU ") != std::string::npos);
  // Two evaluations: at iteration 2 and at the end.
  CHECK(read_all(out / "val.csv").find("\n2,") != std::string::npos);
  CHECK(read_all(out / "val.csv").find("\n4,") != std::string::npos);

  // protoseg-eval on the weights reproduces the trainer's figures.
  auto e = run(PROTOSEG_EVAL_EXE, {"--checkpoint", (out / "model.safetensors").string(), "--out",
                                   (dir / "eval").string(), "--scenes-val", "6"});
  INFO(e.output);
  REQUIRE(e.status == 0);
  const auto em = ps::io::parse_json(read_all(dir / "eval" / "metrics.json"));
  CHECK(em.find("mIoU")->as_number() == doctest::Approx(miou).epsilon(1e-9));
  CHECK(fs::is_regular_file(dir / "eval" / "confusion.csv"));
  // Sliding-window, multi-scale, flipped testing runs too.
  auto e2 = run(PROTOSEG_EVAL_EXE, {"--checkpoint", (out / "checkpoint.safetensors").string(), "--out",
                                    (dir / "eval2").string(), "--scenes-val", "3", "--eval-mode", "slide",
                                    "--eval-crop", "48", "48", "--eval-stride", "32", "32", "--eval-scales",
                                    "0.75,1.25", "--eval-flip", "on"});
  INFO(e2.output);
  CHECK(e2.status == 0);
  CHECK(fs::is_regular_file(dir / "eval2" / "metrics.json"));

  // protoseg-infer on a folder of images.
  const auto in = dir / "images";
  write_png_at(in / "a.png", make_image(64, 64, 1));
  write_jpg(in / "sub" / "b.jpg", make_image(50, 70, 2));
  auto i = run(PROTOSEG_INFER_EXE, {"--checkpoint", (out / "model.safetensors").string(), "--input", in.string(),
                                    "--out", (dir / "infer").string()});
  INFO(i.output);
  REQUIRE(i.status == 0);
  for (const char* f : {"a.png", "a_overlay.png", "b.png", "b_overlay.png"})
    CHECK_MESSAGE(fs::is_regular_file(dir / "infer" / f), f);
  fs::remove_all(dir);
}

TEST_CASE("protoseg-train trains and evaluates on an ADE20K-layout tree without changes") {
  const auto dir = work_dir("ade");
  const auto root = dir / "ADEChallengeData2016";
  for (int k = 0; k < 4; ++k) {
    const auto stem = "ADE_train_0000000" + std::to_string(k + 1);
    write_jpg(root / "images" / "training" / (stem + ".jpg"), make_image(80, 96, k));
    write_png_at(root / "annotations" / "training" / (stem + ".png"), make_label(80, 96, k, 0, 150));
  }
  for (int k = 0; k < 2; ++k) {
    const auto stem = "ADE_val_0000000" + std::to_string(k + 1);
    write_jpg(root / "images" / "validation" / (stem + ".jpg"), make_image(72, 90, k + 7));
    write_png_at(root / "annotations" / "validation" / (stem + ".png"), make_label(72, 90, k, 0, 150));
  }
  const auto out = dir / "run";
  auto r = run(PROTOSEG_TRAIN_EXE,
               with(tiny_model, {"--dataset", "ade20k", "--data-root", root.string(), "--iters", "3", "--batch", "2",
                                 "--crop", "64", "64", "--random-resize", "on", "--resize-scale", "128", "64",
                                 "--photometric", "on", "--eval-mode", "slide", "--eval-crop", "64", "64",
                                 "--eval-stride", "48", "48", "--out", out.string()}));
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK(r.output.find("ADE20K") != std::string::npos);
  const auto m = ps::io::parse_json(read_all(out / "metrics.json"));
  CHECK(m.find("per_class_iou")->as_object().size() == 150);
  CHECK(m.find("per_class_iou")->as_object().count("wall") == 1);
  fs::remove_all(dir);
}

TEST_CASE("protoseg-train trains and evaluates on a Cityscapes-layout tree without changes") {
  const auto dir = work_dir("cityscapes");
  const auto root = dir / "cityscapes";
  const char* cities[] = {"aachen", "bochum"};
  for (int k = 0; k < 4; ++k) {
    const std::string city = cities[k % 2];
    const std::string stem = city + "_00000" + std::to_string(k) + "_000019";
    write_png_at(root / "leftImg8bit" / "train" / city / (stem + "_leftImg8bit.png"), make_image(64, 128, k));
    // labelIds 0..33: the reader maps them to the 19 train ids (others 255).
    write_png_at(root / "gtFine" / "train" / city / (stem + "_gtFine_labelIds.png"), make_label(64, 128, k, 0, 33));
  }
  const std::string vstem = "frankfurt_000000_000294";
  write_png_at(root / "leftImg8bit" / "val" / "frankfurt" / (vstem + "_leftImg8bit.png"), make_image(64, 128, 9));
  write_png_at(root / "gtFine" / "val" / "frankfurt" / (vstem + "_gtFine_labelIds.png"), make_label(64, 128, 3, 0, 33));
  const auto out = dir / "run";
  auto r = run(PROTOSEG_TRAIN_EXE, with(tiny_model, {"--dataset", "cityscapes", "--data-root", root.string(),
                                                     "--iters", "3", "--batch", "2", "--crop", "64", "64",
                                                     "--class-weights", "cityscapes", "--out", out.string()}));
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK(r.output.find("class-weighted CE (cityscapes)") != std::string::npos);
  CHECK(r.output.find("preset published: as the published code") != std::string::npos);  // auto: published here
  const auto m = ps::io::parse_json(read_all(out / "metrics.json"));
  CHECK(m.find("per_class_iou")->as_object().size() == 19);
  CHECK(m.find("per_class_iou")->as_object().count("road") == 1);
  fs::remove_all(dir);
}

TEST_CASE("an interrupted run resumed from its checkpoint ends with the same weights as an uninterrupted one") {
  const auto dir = work_dir("resume");
  const std::vector<std::string> common =
      with(tiny_model, {"--scenes-train", "40", "--scenes-val", "4", "--iters", "6", "--batch", "2",
                        "--checkpoint-every", "0", "--embedding", "none"});
  auto a = run(PROTOSEG_TRAIN_EXE, with(common, {"--out", (dir / "a").string()}));
  INFO(a.output);
  REQUIRE(a.status == 0);
  auto b1 = run(PROTOSEG_TRAIN_EXE, with(common, {"--out", (dir / "b").string(), "--stop-after", "3"}));
  INFO(b1.output);
  REQUIRE(b1.status == 0);
  CHECK(b1.output.find("stopped at iteration 3") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "b" / "metrics.json"));
  auto b2 = run(PROTOSEG_TRAIN_EXE, with(common, {"--out", (dir / "b").string(), "--resume", "auto"}));
  INFO(b2.output);
  REQUIRE(b2.status == 0);
  CHECK(b2.output.find("resume from") != std::string::npos);
  check_same_state(dir / "a" / "checkpoint.safetensors", dir / "b" / "checkpoint.safetensors");
  // The log of the resumed run is the uninterrupted log (losses equal).
  CHECK(logged_losses(dir / "a" / "log.csv") == logged_losses(dir / "b" / "log.csv"));
  fs::remove_all(dir);
}

TEST_CASE("a run killed with SIGKILL at any moment resumes to the weights of an uninterrupted run, bit for bit") {
  // Checkpoints every iteration, so kills land before, during and after
  // checkpoint writes; each restart resumes from whatever the killed run
  // left (--resume auto once a checkpoint exists). The weights, optimiser
  // state and logged losses must end equal to an uninterrupted run's.
  const auto dir = work_dir("sigkill");
  const std::vector<std::string> common =
      with(tiny_model, {"--scenes-train", "40", "--scenes-val", "4", "--iters", "10", "--batch", "2",
                        "--checkpoint-every", "1", "--eval-every", "0", "--embedding", "none"});
  auto a = run(PROTOSEG_TRAIN_EXE, with(common, {"--out", (dir / "a").string()}));
  INFO(a.output);
  REQUIRE(a.status == 0);
  const fs::path out = dir / "b";
  int kills = 0, finished = 0;
  for (int attempt = 0; attempt < 60 && !finished; ++attempt) {
    std::vector<std::string> args = with(common, {"--out", out.string()});
    if (fs::exists(out / "checkpoint.safetensors")) args = with(args, {"--resume", "auto"});
    std::vector<std::string> argv_s{PROTOSEG_TRAIN_EXE};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      if (FILE* devnull = std::freopen("/dev/null", "w", stdout)) (void)devnull;
      execv(argv[0], argv.data());
      _exit(127);
    }
    // Kill after a delay that grows with each attempt (so the run progresses
    // between kills) and varies within a step of 50 ms.
    const int ms = 150 + 90 * attempt + (attempt * 37) % 50;
    int status = 0;
    bool exited = false;
    for (int waited = 0; waited < ms; waited += 5) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;
        break;
      }
      usleep(5000);
    }
    if (!exited) {
      kill(pid, SIGKILL);
      REQUIRE(waitpid(pid, &status, 0) == pid);
      if (WIFSIGNALED(status)) ++kills;
    }
    if (WIFEXITED(status)) {
      CAPTURE(attempt);
      REQUIRE(WEXITSTATUS(status) == 0);
      finished = 1;
    }
  }
  CAPTURE(kills);
  REQUIRE(finished);
  CHECK(kills >= 2);
  // The checkpoint left after every kill was whole (each restart loaded it);
  // no temporary file is left behind once the run ends.
  CHECK_FALSE(fs::exists(out / "checkpoint.safetensors.tmp"));
  check_same_state(dir / "a" / "checkpoint.safetensors", out / "checkpoint.safetensors");
  CHECK(logged_losses(dir / "a" / "log.csv") == logged_losses(out / "log.csv"));
  fs::remove_all(dir);
}

TEST_CASE("bad input: a clear message, a non-zero exit, and nothing written before destroyed") {
  const auto dir = work_dir("bad");
  auto r = run(PROTOSEG_TRAIN_EXE, {"--dataset", "ade20k", "--data-root", (dir / "nowhere").string(), "--out",
                                    (dir / "o").string()});
  CHECK(r.status != 0);
  CHECK(r.output.find("nowhere") != std::string::npos);

  r = run(PROTOSEG_TRAIN_EXE, {"--dataset", "cityscapes"});
  CHECK(r.status == 2);
  CHECK(r.output.find("--data-root") != std::string::npos);

  r = run(PROTOSEG_TRAIN_EXE, {"--frobnicate", "3"});
  CHECK(r.status == 2);
  CHECK(r.output.find("unknown option --frobnicate") != std::string::npos);

  r = run(PROTOSEG_TRAIN_EXE, {"--lr", "fast"});
  CHECK(r.status == 2);
  CHECK(r.output.find("--lr: 'fast' is not a valid number") != std::string::npos);

  // --device cuda on a machine without a GPU (an nvcc build names CUDA's
  // reason) or from a build without CUDA (the message says so): one clear
  // error, exit 1, before any data is read.
  r = run(PROTOSEG_TRAIN_EXE, {"--device", "cuda", "--out", (dir / "cuda").string()});
  CHECK(r.status == 1);
  CHECK(r.output.find("protoseg-train: error: --device cuda: ") != std::string::npos);
#if defined(PROTOSEG_TRAINERS_NVCC)
  CHECK(r.output.find("no usable CUDA device") != std::string::npos);
#else
  CHECK(r.output.find("no CUDA support") != std::string::npos);
#endif
  CHECK(r.output.find("data   ") == std::string::npos);

  {
    std::ofstream cfg(dir / "bad.json");
    cfg << "{\"iters\": \"many\"}";
  }
  r = run(PROTOSEG_TRAIN_EXE, {"--config", (dir / "bad.json").string()});
  CHECK(r.status == 2);
  CHECK(r.output.find("config 'iters': expected an integer") != std::string::npos);

  // A truncated checkpoint: refused by name; the run directory keeps its files.
  const auto out = dir / "run";
  fs::create_directories(out);
  {
    std::ofstream f(out / "checkpoint.safetensors", std::ios::binary);
    f << "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":";
  }
  {
    std::ofstream f(out / "metrics.json");
    f << "{\"mIoU\": 12.5}";
  }
  r = run(PROTOSEG_TRAIN_EXE, with(tiny_model, {"--scenes-train", "8", "--scenes-val", "2", "--iters", "2",
                                                "--batch", "2", "--out", out.string(), "--resume", "auto"}));
  INFO(r.output);
  CHECK(r.status == 1);
  CHECK(r.output.find("checkpoint.safetensors") != std::string::npos);
  CHECK(read_all(out / "metrics.json") == "{\"mIoU\": 12.5}");

  // protoseg-eval: a file that is not a weights file, and a missing one.
  r = run(PROTOSEG_EVAL_EXE, {"--checkpoint", (out / "metrics.json").string()});
  CHECK(r.status != 0);
  CHECK(r.output.find("metrics.json") != std::string::npos);
  r = run(PROTOSEG_EVAL_EXE, {"--checkpoint", (dir / "none.safetensors").string()});
  CHECK(r.status != 0);
  CHECK(r.output.find("does not exist") != std::string::npos);
  r = run(PROTOSEG_INFER_EXE, {"--checkpoint", (dir / "none.safetensors").string(), "--input", "x.png"});
  CHECK(r.status != 0);
  fs::remove_all(dir);
}

TEST_CASE("--pretrained loads backbone weights and reports them, and refuses a bad file by name") {
  const auto dir = work_dir("pretrained");
  const std::vector<std::string> short_run{"--scenes-train", "8", "--scenes-val", "2", "--iters", "1", "--batch", "2",
                                           "--eval-limit", "2", "--embedding", "none"};
  // Backbone weights under "backbone." names, with one entry outside the backbone.
  {
    auto o = ps::models::mit_config("mit_b0");
    o.init_weights = false;
    ps::models::mix_transformer<float> mit(o);
    ps::io::safetensors_archive a;
    for (auto& [k, t] : mit.state_dict().tensors) a.tensors["backbone." + k] = t;
    a.put("decode_head.conv_seg.weight", ps::tensor<float>({4, 32, 1, 1}));
    ps::io::write_safetensors((dir / "mit_b0.safetensors").string(), a);
  }
  auto r = run(PROTOSEG_TRAIN_EXE, with(with(tiny_model, short_run), {"--out", (dir / "ok").string(), "--pretrained",
                                                                      (dir / "mit_b0.safetensors").string()}));
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("pretrained: 176 tensors loaded, 0 missing, 1 unexpected") != std::string::npos);
  CHECK(r.output.find("decode_head.conv_seg.weight") != std::string::npos);

  // Missing file, and a MiT of other widths (the converted tiny fixture): exit 1 naming the file.
  for (const std::string& bad : {(dir / "none.safetensors").string(),
                                std::string(PROTOSEG_FIXTURE_DIR) + "/convert/tiny_mit_mmseg.safetensors"}) {
    r = run(PROTOSEG_TRAIN_EXE, with(with(tiny_model, short_run), {"--out", (dir / "bad").string(), "--pretrained", bad}));
    INFO(r.output);
    CHECK(r.status == 1);
    CHECK(r.output.find("--pretrained '" + bad + "'") != std::string::npos);
  }
  CHECK(r.output.find("patch_embed1.proj.weight' has shape (8, 3, 7, 7)") != std::string::npos);
  fs::remove_all(dir);
}

#if defined(PROTOSEG_TRAIN_OMP_EXE)
namespace {
// The rows of a log.csv as numbers (iter, lr, loss, ce, ppc, ppd, seconds).
std::vector<std::vector<double>> read_log(const fs::path& p) {
  std::vector<std::vector<double>> rows;
  std::istringstream in(read_all(p));
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<double> v;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) v.push_back(std::stod(cell));
    rows.push_back(v);
  }
  return rows;
}
}  // namespace

TEST_CASE("--device cuda (Thrust's OpenMP system) trains the main job's model as the cpu does, without allocating") {
  // The main job's model (ResNet-18 width 32 + MLP decoder + ProtoSeg head),
  // 20 iterations from the same seed on both policies, in one program.
  const auto dir = work_dir("cuda_omp");
  const std::vector<std::string> job{"--scenes-train", "16", "--scenes-val", "4", "--iters", "20", "--batch", "2",
                                     "--lr", "3e-4", "--eval-every", "0", "--embedding", "none", "--threads", "2",
                                     "--workers", "1", "--log-every", "5"};
  auto c = run(PROTOSEG_TRAIN_OMP_EXE, with(job, {"--out", (dir / "cpu").string()}));
  INFO(c.output);
  REQUIRE(c.status == 0);
  auto g = run(PROTOSEG_TRAIN_OMP_EXE, with(job, {"--out", (dir / "cuda").string(), "--device", "cuda"}));
  INFO(g.output);
  REQUIRE(g.status == 0);
  CHECK(g.output.find("device cuda: Thrust's OpenMP system") != std::string::npos);
  for (const char* f : {"metrics.json", "predictions.png", "curves.png", "model.safetensors",
                        "checkpoint.safetensors", "log.csv", "val.csv"})
    CHECK_MESSAGE(fs::is_regular_file(dir / "cuda" / f), f);

  // The cpu path of protoseg-train (whose cuda half nvcc may have compiled)
  // is the same code as protoseg-train-omp's: the same losses, bit for bit.
  // (Both halves instantiate the cpu policy's inline functions; the link
  // order keeps the host compiler's copies. examples/protoseg-train.cmake.)
  auto p = run(PROTOSEG_TRAIN_EXE, with(job, {"--out", (dir / "plain").string()}));
  INFO(p.output);
  REQUIRE(p.status == 0);
  {
    auto losses = [](const fs::path& f) {
      std::string out;
      std::istringstream in(read_all(f));
      for (std::string line; std::getline(in, line);) out += line.substr(0, line.rfind(',')) + "\n";  // not the time
      return out;
    };
    CHECK(losses(dir / "plain" / "log.csv") == losses(dir / "cpu" / "log.csv"));
  }

  // The losses: the first step's to float precision (every op's cpu/cuda
  // parity is tested in test_cuda_*); later steps within 2 %, since 20 steps
  // of training amplify the last-bit differences of the two policies' sums.
  const auto a = read_log(dir / "cpu" / "log.csv"), b = read_log(dir / "cuda" / "log.csv");
  REQUIRE(a.size() == 20);
  REQUIRE(b.size() == 20);
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t k = 2; k <= 5; ++k) {
      INFO("iteration " << i + 1 << " column " << k);
      CHECK(b[i][k] == doctest::Approx(a[i][k]).epsilon(i == 0 ? 1e-5 : 2e-2));
    }

  // The counters after warm-up: no device allocation misses the cache, and
  // the host waits 3 times per step: the trainer's one read of the losses,
  // the prototype step's count of grouped pixels, and its diagnostics (rounds,
  // correct pixels). Losses, sums and checks stay on the device. The budget
  // only shrinks (issue #15 asks for 2).
  const auto m = ps::io::parse_json(read_all(dir / "cuda" / "metrics.json"));
  const auto* per = m.find("cuda_per_step");
  REQUIRE(per != nullptr);
  CHECK(per->find("steps")->as_number() == 18);
  CHECK(per->find("allocations")->as_number() == 0);
  CHECK(per->find("syncs")->as_number() <= 3);
  CHECK(per->find("launches")->as_number() > 0);
  MESSAGE("cuda per step: " << per->dump());

  // Checkpoints are device-neutral: the cuda run's checkpoint resumes on the
  // cpu (and evaluates there).
  auto r = run(PROTOSEG_TRAIN_OMP_EXE, with(job, {"--out", (dir / "cuda").string(), "--iters", "22", "--resume",
                                                  "auto"}));
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("resume from ") != std::string::npos);

  fs::remove_all(dir);
}
#endif

#else
TEST_CASE("trainers not built (PROTOSEG_BUILD_EXAMPLES is OFF)") { MESSAGE("skipped"); }
#endif
