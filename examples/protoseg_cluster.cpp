// protoseg-cluster: Sinkhorn-Knopp online clustering (ProtoSeg supplementary
// Algorithm 1) of .npy files from the command line.
//
//   protoseg-cluster --scores S.npy --assignment Q.npy --labels I.npy
//   protoseg-cluster --embeddings X.npy --prototypes P.npy --labels I.npy --log-domain --kappa 0.01
//
// Scores are K x N; embeddings N x D and prototypes K x D (scores = P X^T).
// Inputs are float32 or float64 (C order); the solver runs in float64 when
// every input is float64, in float32 otherwise. Writes the K x N assignment
// as float32 and the argmax prototype per pixel as int64, and prints the
// time taken. Bad files or arguments: a message on stderr, exit status 1
// (2 for usage errors).

#include <protoseg/backend/cpu/parallel.hpp>
#include <protoseg/io/npy.hpp>
#include <protoseg/ot/assignment.hpp>
#include <protoseg/ot/sinkhorn.hpp>
#include <protoseg/tensor/math.hpp>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

namespace {

constexpr const char* usage_text =
    "usage: protoseg-cluster (--scores S.npy | --embeddings X.npy --prototypes P.npy)\n"
    "                        [--assignment Q.npy] [--labels I.npy]\n"
    "                        [--iterations N] [--kappa K] [--log-domain] [--tolerance T]\n"
    "                        [--threads N] [--help]\n"
    "\n"
    "Sinkhorn-Knopp online clustering (ProtoSeg, supplementary Algorithm 1).\n"
    "\n"
    "  --scores S.npy       K x N prototype-pixel scores (float32 or float64, C order)\n"
    "  --embeddings X.npy   N x D pixel embeddings (with --prototypes; scores = P X^T)\n"
    "  --prototypes P.npy   K x D prototypes\n"
    "  --assignment Q.npy   write the K x N assignment (float32, columns sum to 1)\n"
    "  --labels I.npy       write the argmax prototype of each pixel (int64, N)\n"
    "  --iterations N       Sinkhorn rounds, at most N with --tolerance (default 3)\n"
    "  --kappa K            entropic weight kappa of Eq. 9, > 0 (default 0.05)\n"
    "  --log-domain         log-sum-exp form: finite for small kappa\n"
    "  --tolerance T        stop once the prototype marginal error is <= T (default 0: off)\n"
    "  --threads N          CPU threads (default: OpenMP's setting)\n"
    "  --help               this text\n";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct args {
  std::string scores, embeddings, prototypes, assignment, labels;
  protoseg::ot::sinkhorn_options opts{};
  int threads = 0;
};

double parse_double(std::string_view flag, const std::string& v) {
  double x = 0;
  const char* end = v.data() + v.size();
  auto [p, ec] = std::from_chars(v.data(), end, x);
  if (ec != std::errc() || p != end || v.empty())
    throw usage_error(std::string(flag) + ": got '" + v + "', expected a number");
  return x;
}

int parse_int(std::string_view flag, const std::string& v) {
  int x = 0;
  const char* end = v.data() + v.size();
  auto [p, ec] = std::from_chars(v.data(), end, x);
  if (ec != std::errc() || p != end || v.empty())
    throw usage_error(std::string(flag) + ": got '" + v + "', expected an integer");
  return x;
}

std::optional<args> parse(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) {
    const std::string_view f = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw usage_error(std::string(f) + ": missing value");
      return argv[++i];
    };
    if (f == "--help" || f == "-h") return std::nullopt;
    else if (f == "--scores") a.scores = value();
    else if (f == "--embeddings") a.embeddings = value();
    else if (f == "--prototypes") a.prototypes = value();
    else if (f == "--assignment") a.assignment = value();
    else if (f == "--labels") a.labels = value();
    else if (f == "--iterations") a.opts.iterations = parse_int(f, value());
    else if (f == "--kappa") a.opts.kappa = parse_double(f, value());
    else if (f == "--tolerance") a.opts.tolerance = parse_double(f, value());
    else if (f == "--log-domain") a.opts.log_domain = true;
    else if (f == "--threads") {
      a.threads = parse_int(f, value());
      if (a.threads < 1) throw usage_error("--threads: got " + std::to_string(a.threads) + ", expected >= 1");
    } else {
      throw usage_error("unknown argument '" + std::string(f) + "' (see --help)");
    }
  }
  const bool have_scores = !a.scores.empty();
  const bool have_pair = !a.embeddings.empty() || !a.prototypes.empty();
  if (have_scores && have_pair) throw usage_error("give either --scores or --embeddings with --prototypes, not both");
  if (!have_scores && !have_pair) throw usage_error("no input: give --scores S.npy, or --embeddings X.npy --prototypes P.npy");
  if (have_pair && (a.embeddings.empty() || a.prototypes.empty()))
    throw usage_error("--embeddings and --prototypes go together; one of them is missing");
  // Option ranges are checked by the library (protoseg::value_error) before any work.
  return a;
}

bool all_float64(const args& a) {
  if (!a.scores.empty()) return protoseg::io::read_npy_header(a.scores).dtype == protoseg::io::npy_dtype::float64;
  return protoseg::io::read_npy_header(a.embeddings).dtype == protoseg::io::npy_dtype::float64 &&
         protoseg::io::read_npy_header(a.prototypes).dtype == protoseg::io::npy_dtype::float64;
}

template <class T>
protoseg::tensor<T> read_matrix(const std::string& path, const char* what) {
  auto t = protoseg::io::read_npy_as<T>(path);
  if (t.rank() != 2)
    throw protoseg::shape_error(std::string(what) + " " + path + ": got shape " + t.shape().str() +
                                ", expected a matrix");
  return t;
}

template <class T>
int run(const args& a) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  protoseg::tensor<T> scores;
  if (!a.scores.empty()) {
    scores = read_matrix<T>(a.scores, "--scores");
  } else {
    const auto X = read_matrix<T>(a.embeddings, "--embeddings");
    const auto P = read_matrix<T>(a.prototypes, "--prototypes");
    if (X.shape()[1] != P.shape()[1])
      throw protoseg::shape_error("--embeddings " + a.embeddings + " has shape " + X.shape().str() +
                                  " (N x D) but --prototypes " + a.prototypes + " has shape " + P.shape().str() +
                                  " (K x D): D differs");
    scores = protoseg::matmul(P, X, false, true);  // K x N
  }
  const auto t1 = clock::now();
  const auto res = protoseg::ot::sinkhorn_solve(scores, a.opts);
  const auto t2 = clock::now();
  if (!a.assignment.empty()) {
    if constexpr (std::is_same_v<T, float>) {
      protoseg::io::write_npy(a.assignment, res.assignment);
    } else {
      protoseg::io::write_npy(a.assignment, protoseg::io::detail::cast_npy<float>(res.assignment));
    }
  }
  if (!a.labels.empty()) protoseg::io::write_npy(a.labels, protoseg::ot::assignment_index(res.assignment));
  const auto t3 = clock::now();
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::printf("protoseg-cluster: K=%lld N=%lld (%s%s), %d iteration%s, marginal error %.3g\n",
              static_cast<long long>(scores.shape()[0]), static_cast<long long>(scores.shape()[1]),
              sizeof(T) == 4 ? "float32" : "float64", a.opts.log_domain ? ", log domain" : "", res.iterations,
              res.iterations == 1 ? "" : "s", res.marginal_error);
  std::printf("time: read%s %.3f ms, sinkhorn %.3f ms, write %.3f ms, threads %d\n",
              a.scores.empty() ? " + scores P X^T" : "", ms(t1 - t0), ms(t2 - t1), ms(t3 - t2),
              protoseg::num_threads());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const auto a = parse(argc, argv);
    if (!a) {
      std::cout << usage_text;
      return 0;
    }
    if (a->threads > 0) protoseg::set_num_threads(a->threads);
    protoseg::ot::detail::check_options(a->opts, "protoseg-cluster");  // before reading any file
    return all_float64(*a) ? run<double>(*a) : run<float>(*a);
  } catch (const usage_error& e) {
    std::cerr << "protoseg-cluster: " << e.what() << "\n" << usage_text;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "protoseg-cluster: error: " << e.what() << "\n";
    return 1;
  } catch (...) {
    std::cerr << "protoseg-cluster: error: unknown exception\n";
    return 1;
  }
}
