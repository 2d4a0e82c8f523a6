#pragma once
/// \file confusion.hpp
/// Confusion matrix of a semantic segmentation and the metrics mmseg reports
/// from it (mmseg.core.evaluation.metrics: mIoU, aAcc, mAcc, per-class IoU
/// and accuracy), plus a JSON summary for logs.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "protoseg/backend/parallel.hpp"
#include "protoseg/error.hpp"
#include "protoseg/io/json.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg::metrics {

/// Metrics of a confusion matrix, as fractions in [0, 1]. Per-class IoU is
/// NaN for a class that appears neither in the labels nor in the
/// predictions (union 0, as mmseg); per-class accuracy is NaN for a class
/// absent from the labels. The means skip NaN (numpy's nanmean) and are NaN
/// only when every class is NaN; aacc is NaN when no pixel was counted.
struct segmentation_metrics {
  double miou = std::numeric_limits<double>::quiet_NaN();  ///< mean IoU over classes
  double aacc = std::numeric_limits<double>::quiet_NaN();  ///< correct pixels / counted pixels
  double macc = std::numeric_limits<double>::quiet_NaN();  ///< mean per-class accuracy (recall)
  std::vector<double> iou;  ///< per class: |gt = c and pred = c| / |gt = c or pred = c|
  std::vector<double> acc;  ///< per class: |gt = c and pred = c| / |gt = c|
};

/// A num_classes x num_classes histogram of (label, prediction) pairs.
/// Pixels whose label is `ignore_index` are not counted.
class confusion_matrix {
 public:
  /// An empty matrix; num_classes > 0. The ignore index may be any value
  /// (255 and -1 are the usual ones); if it is a class id that class's
  /// pixels are never counted.
  explicit confusion_matrix(std::int64_t num_classes, std::int64_t ignore_index = 255)
      : classes_(num_classes), ignore_(ignore_index) {
    if (num_classes <= 0)
      ::protoseg::detail::fail<value_error>("confusion_matrix: num_classes is ", num_classes, ", expected > 0");
    if (num_classes > (std::int64_t{1} << 15))
      ::protoseg::detail::fail<value_error>("confusion_matrix: num_classes is ", num_classes,
                                            ", expected at most 32768");
    counts_.assign(static_cast<std::size_t>(num_classes * num_classes), 0);
  }

  /// A matrix with the given row-major counts (label-major: counts[gt * C +
  /// pred]), e.g. after summing `counts()` across processes.
  static confusion_matrix from_counts(std::int64_t num_classes, std::int64_t ignore_index,
                                      std::vector<std::int64_t> counts) {
    confusion_matrix m(num_classes, ignore_index);
    if (counts.size() != m.counts_.size())
      ::protoseg::detail::fail<value_error>("confusion_matrix::from_counts: ", counts.size(), " counts given, expected ",
                                            m.counts_.size(), " (", num_classes, " x ", num_classes, ")");
    for (std::size_t i = 0; i < counts.size(); ++i)
      if (counts[i] < 0)
        ::protoseg::detail::fail<value_error>("confusion_matrix::from_counts: count ", i, " is ", counts[i],
                                              ", expected >= 0");
    m.counts_ = std::move(counts);
    return m;
  }

  /// Counts n (prediction, label) pairs. Every prediction must be in
  /// [0, num_classes); every label must be in [0, num_classes) or equal to
  /// the ignore index. On a bad value it throws value_error naming the
  /// position and the value, and the matrix is unchanged. One pass over
  /// the data, with per-thread histograms when n is large.
  void update(const std::int64_t* pred, const std::int64_t* label, std::int64_t n) {
    if (n < 0) ::protoseg::detail::fail<value_error>("confusion_matrix::update: n is ", n, ", expected >= 0");
    if (n == 0) return;
    if (!pred || !label) ::protoseg::detail::fail<value_error>("confusion_matrix::update: null data pointer");
    const std::int64_t C = classes_, ignore = ignore_;
    const std::size_t cells = counts_.size();
    int threads = 1;
#if defined(_OPENMP)
    if (n > backend::cpu_detail::parallel_grain) threads = std::max(1, num_threads());
#endif
    std::vector<std::int64_t> partial(cells * static_cast<std::size_t>(threads), 0);
    std::vector<char> bad(static_cast<std::size_t>(threads), 0);
    auto count = [&](int t, std::int64_t begin, std::int64_t end) {
      std::int64_t* h = partial.data() + cells * static_cast<std::size_t>(t);
      bool b = false;
      for (std::int64_t i = begin; i < end; ++i) {
        const std::int64_t p = pred[i], l = label[i];
        const bool p_ok = p >= 0 && p < C;
        if (l == ignore) {
          b = b || !p_ok;
          continue;
        }
        if (!p_ok || l < 0 || l >= C) {
          b = true;
          continue;
        }
        ++h[l * C + p];
      }
      bad[static_cast<std::size_t>(t)] = b;
    };
    if (threads == 1) {
      count(0, 0, n);
    } else {
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
      {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const std::int64_t chunk = (n + nt - 1) / nt;
        const std::int64_t begin = std::min<std::int64_t>(n, chunk * t), end = std::min<std::int64_t>(n, begin + chunk);
        count(t, begin, end);
      }
#endif
    }
    for (char b : bad)
      if (b) report_first_bad(pred, label, n);
    for (int t = 0; t < threads; ++t) {
      const std::int64_t* h = partial.data() + cells * static_cast<std::size_t>(t);
      for (std::size_t i = 0; i < cells; ++i) counts_[i] += h[i];
    }
  }

  /// Counts the pairs of two integer tensors of the same shape (any policy;
  /// device tensors are copied to the host).
  template <class P>
  void update(const tensor<std::int64_t, P>& pred, const tensor<std::int64_t, P>& label) {
    pred.require_defined("confusion_matrix::update (pred)");
    label.require_defined("confusion_matrix::update (label)");
    if (pred.shape() != label.shape())
      ::protoseg::detail::fail<shape_error>("confusion_matrix::update: pred has shape ", pred.shape(),
                                            " and label has shape ", label.shape(), ", expected equal");
    if constexpr (host_accessible_v<P>) {
      update(pred.data(), label.data(), pred.numel());
    } else {
      const auto p = pred.to_vector(), l = label.to_vector();
      update(p.data(), l.data(), pred.numel());
    }
  }

  /// Adds the counts of another matrix (same classes and ignore index).
  void merge(const confusion_matrix& other) {
    if (other.classes_ != classes_ || other.ignore_ != ignore_)
      ::protoseg::detail::fail<value_error>("confusion_matrix::merge: the other matrix has ", other.classes_,
                                            " classes and ignore index ", other.ignore_, ", expected ", classes_,
                                            " and ", ignore_);
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  }

  /// Number of counted pixels with label `gt` and prediction `pred`.
  std::int64_t at(std::int64_t gt, std::int64_t pred) const {
    if (gt < 0 || gt >= classes_ || pred < 0 || pred >= classes_)
      ::protoseg::detail::fail<value_error>("confusion_matrix::at: (", gt, ", ", pred, ") is out of range for ",
                                            classes_, " classes");
    return counts_[static_cast<std::size_t>(gt * classes_ + pred)];
  }

  std::int64_t num_classes() const noexcept { return classes_; }
  std::int64_t ignore_index() const noexcept { return ignore_; }
  /// Row-major counts, counts()[gt * num_classes() + pred].
  const std::vector<std::int64_t>& counts() const noexcept { return counts_; }
  /// Number of counted (not ignored) pixels.
  std::int64_t total() const noexcept {
    std::int64_t s = 0;
    for (auto c : counts_) s += c;
    return s;
  }
  /// Sets every count to zero.
  void reset() { std::fill(counts_.begin(), counts_.end(), 0); }

  /// mIoU, aAcc, mAcc and per-class IoU / accuracy, as mmseg computes them.
  segmentation_metrics compute() const {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const auto C = static_cast<std::size_t>(classes_);
    segmentation_metrics m;
    m.iou.assign(C, nan);
    m.acc.assign(C, nan);
    std::vector<std::int64_t> gt(C, 0), pr(C, 0);
    std::int64_t correct = 0, total = 0;
    for (std::size_t g = 0; g < C; ++g)
      for (std::size_t p = 0; p < C; ++p) {
        const std::int64_t c = counts_[g * C + p];
        gt[g] += c;
        pr[p] += c;
      }
    double iou_sum = 0, acc_sum = 0;
    std::size_t iou_n = 0, acc_n = 0;
    for (std::size_t c = 0; c < C; ++c) {
      const std::int64_t tp = counts_[c * C + c], uni = gt[c] + pr[c] - tp;
      correct += tp;
      total += gt[c];
      if (uni > 0) {
        m.iou[c] = static_cast<double>(tp) / static_cast<double>(uni);
        iou_sum += m.iou[c];
        ++iou_n;
      }
      if (gt[c] > 0) {
        m.acc[c] = static_cast<double>(tp) / static_cast<double>(gt[c]);
        acc_sum += m.acc[c];
        ++acc_n;
      }
    }
    if (iou_n) m.miou = iou_sum / static_cast<double>(iou_n);
    if (acc_n) m.macc = acc_sum / static_cast<double>(acc_n);
    if (total) m.aacc = static_cast<double>(correct) / static_cast<double>(total);
    return m;
  }

 private:
  [[noreturn]] void report_first_bad(const std::int64_t* pred, const std::int64_t* label, std::int64_t n) const {
    for (std::int64_t i = 0; i < n; ++i) {
      if (pred[i] < 0 || pred[i] >= classes_)
        ::protoseg::detail::fail<value_error>("confusion_matrix::update: prediction ", pred[i], " at position ", i,
                                              " is out of range [0, ", classes_, ")");
      if (label[i] != ignore_ && (label[i] < 0 || label[i] >= classes_))
        ::protoseg::detail::fail<value_error>("confusion_matrix::update: label ", label[i], " at position ", i,
                                              " is out of range [0, ", classes_, ") and is not the ignore index ",
                                              ignore_);
    }
    ::protoseg::detail::fail<value_error>("confusion_matrix::update: bad input");  // not reached
  }

  std::int64_t classes_;
  std::int64_t ignore_;
  std::vector<std::int64_t> counts_;
};

/// The metrics as a JSON value: {"mIoU", "aAcc", "mAcc", "per_class_iou":
/// {name: value}, "per_class_acc": {name: value}} with every value in
/// PERCENT (0..100, as mmseg's logs print them, at full precision) and null
/// for NaN. `class_names` has one name per class, or is empty (names "0",
/// "1", ...). JSON objects are unordered: readers key by class name.
inline io::json_value to_json_value(const segmentation_metrics& m, const std::vector<std::string>& class_names) {
  const std::size_t C = m.iou.size();
  if (m.acc.size() != C)
    ::protoseg::detail::fail<value_error>("metrics::to_json: ", m.iou.size(), " IoU values and ", m.acc.size(),
                                          " accuracies, expected the same number");
  if (!class_names.empty() && class_names.size() != C)
    ::protoseg::detail::fail<value_error>("metrics::to_json: ", class_names.size(), " class names for ", C,
                                          " classes");
  std::set<std::string> seen;
  for (const auto& n : class_names)
    if (!seen.insert(n).second)
      ::protoseg::detail::fail<value_error>("metrics::to_json: class name '", n, "' appears twice");
  auto pct = [](double v) { return std::isnan(v) ? io::json_value() : io::json_value(v * 100.0); };
  io::json_value::object iou, acc;
  for (std::size_t c = 0; c < C; ++c) {
    const std::string name = class_names.empty() ? std::to_string(c) : class_names[c];
    iou[name] = pct(m.iou[c]);
    acc[name] = pct(m.acc[c]);
  }
  io::json_value::object o;
  o["mIoU"] = pct(m.miou);
  o["aAcc"] = pct(m.aacc);
  o["mAcc"] = pct(m.macc);
  o["per_class_iou"] = io::json_value(std::move(iou));
  o["per_class_acc"] = io::json_value(std::move(acc));
  return io::json_value(std::move(o));
}

/// `to_json_value(m, class_names)` as compact JSON text (values in percent).
inline std::string to_json(const segmentation_metrics& m, const std::vector<std::string>& class_names = {}) {
  return to_json_value(m, class_names).dump();
}

}  // namespace protoseg::metrics
