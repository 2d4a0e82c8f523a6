#pragma once
/// \file datasets.hpp
/// Readers for the segmentation data sets the example trainers use, each a
/// `segmentation_dataset` (see dataset.hpp) that lists its files when it is
/// constructed and decodes one sample per `get` call, lazily, from disk:
///
/// - `ade20k_dataset`: ADE20K (SceneParsing / ADEChallengeData2016), 150
///   classes, annotation 0 ignored and v -> v - 1 (mmsegmentation's
///   `reduce_zero_label`).
/// - `cityscapes_dataset`: Cityscapes fine annotations, 19 classes, from
///   `*_gtFine_labelTrainIds.png`, or from `*_gtFine_labelIds.png` mapped with
///   the table of cityscapesScripts' labels.py.
/// - `coco_stuff164k_dataset`: COCO-Stuff 164k, 171 classes, from
///   mmsegmentation's converted `*_labelTrainIds.png`, or from the raw
///   stuff-thing maps mapped 182 -> 171.
/// - `folder_dataset`: any tree of images with single-channel label PNGs.
///
/// `open_dataset` picks one by name. Every error names the directory or the
/// file at fault; docs/data.md describes the layouts.

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "protoseg/data/dataset.hpp"
#include "protoseg/data/dataset_info.hpp"
#include "protoseg/data/image_read.hpp"
#include "protoseg/error.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg::data {

// The class lists, label tables and palettes are in dataset_info.hpp.


// ---- the shared reader ---------------------------------------------------------------------

namespace data_detail {

namespace fs = std::filesystem;

/// Raw label value -> train id (0..C-1 or 255), or -1 for a value that the
/// encoding does not allow; `allowed` says which values are, for messages.
struct label_encoding {
  std::array<std::int16_t, 256> to_train_id{};
  std::string allowed;
};

/// Train ids used as they are: 0..C-1 and 255.
inline std::shared_ptr<const label_encoding> identity_encoding(std::int64_t num_classes) {
  auto e = std::make_shared<label_encoding>();
  for (int v = 0; v < 256; ++v) e->to_train_id[static_cast<std::size_t>(v)] = std::int16_t(v < num_classes ? v : -1);
  e->to_train_id[255] = 255;
  e->allowed = ::protoseg::detail::concat_message("train ids 0..", num_classes - 1, " or the ignore label 255");
  return e;
}

inline std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

inline void require_dir(const fs::path& dir, const std::string& who, const std::string& what,
                        const std::string& hint = {}) {
  std::error_code ec;
  const auto st = fs::status(dir, ec);
  if (!fs::exists(st))
    ::protoseg::detail::fail<io_error>(who, ": ", what, " '", dir.string(), "' does not exist", hint);
  if (!fs::is_directory(st))
    ::protoseg::detail::fail<io_error>(who, ": ", what, " '", dir.string(), "' is not a directory", hint);
}

inline bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

inline bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

/// The regular files under `dir` (recursively when asked, following
/// directory links) for which keep(path) holds, sorted by path.
template <class Keep>
std::vector<fs::path> list_files(const fs::path& dir, bool recursive, const std::string& who, Keep keep) {
  std::vector<fs::path> out;
  std::error_code ec;
  auto visit = [&](const fs::directory_entry& e) {
    std::error_code e2;
    if (e.is_regular_file(e2) && keep(e.path())) out.push_back(e.path());
  };
  if (recursive) {
    fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec), end;
    for (; !ec && it != end; it.increment(ec)) visit(*it);
  } else {
    fs::directory_iterator it(dir, ec), end;
    for (; !ec && it != end; it.increment(ec)) visit(*it);
  }
  if (ec) ::protoseg::detail::fail<io_error>(who, ": cannot list the directory '", dir.string(), "': ", ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace data_detail

/// The common part of the readers: a sorted list of (image file, label file)
/// pairs, each with the encoding of its label file, decoded in `get`.
/// `get` only reads immutable state and may be called from several threads.
class file_pair_dataset : public segmentation_dataset {
 public:
  std::int64_t size() const override { return static_cast<std::int64_t>(entries_.size()); }

  /// Decodes sample i: the image as RGB, the label file mapped to train ids.
  /// Throws `value_error` for i out of range, for a label map whose size is
  /// not the image's, and for a label value that is neither a class nor the
  /// ignore label after the mapping; `io_error` for unreadable files.
  sample get(std::int64_t i) const override {
    const entry& e = at(i, "get");
    sample s;
    s.name = e.name;
    s.image = read_image(e.image);
    const tensor<std::uint8_t> raw = read_label_image(e.label);
    if (raw.size(0) != s.image.size(0) || raw.size(1) != s.image.size(1))
      ::protoseg::detail::fail<value_error>(title_, ": the label file '", e.label.string(), "' is ", raw.size(1), "x",
                                            raw.size(0), " (width x height) but the image '", e.image.string(),
                                            "' is ", s.image.size(1), "x", s.image.size(0));
    s.label = tensor<std::uint8_t>::empty(raw.shape());
    const std::uint8_t* in = raw.data();
    std::uint8_t* out = s.label.data();
    const auto& map = e.encoding->to_train_id;
    const std::int64_t n = raw.numel(), w = raw.size(1);
    for (std::int64_t k = 0; k < n; ++k) {
      const std::int16_t t = map[in[k]];
      if (t < 0)
        ::protoseg::detail::fail<value_error>(title_, ": the label file '", e.label.string(), "' holds the value ",
                                              int(in[k]), " at pixel (row ", k / w, ", column ", k % w,
                                              "); allowed are ", e.encoding->allowed);
      out[k] = static_cast<std::uint8_t>(t);
    }
    return s;
  }

  const std::vector<std::string>& class_names() const override { return classes_; }

  std::string description() const override {
    return ::protoseg::detail::concat_message(title_, ": ", entries_.size(), entries_.size() == 1 ? " image" : " images",
                                              " under ", root_.string());
  }

  /// The image file of sample i.
  const std::filesystem::path& image_path(std::int64_t i) const { return at(i, "image_path").image; }
  /// The label file of sample i (as it is on disk, before any mapping).
  const std::filesystem::path& label_path(std::int64_t i) const { return at(i, "label_path").label; }
  /// The directory the files were found under.
  const std::filesystem::path& root() const noexcept { return root_; }

 protected:
  file_pair_dataset(std::string title, std::filesystem::path root, std::vector<std::string> classes)
      : title_(std::move(title)), root_(std::move(root)), classes_(std::move(classes)) {}

  void add(std::filesystem::path image, std::filesystem::path label, std::string name,
           std::shared_ptr<const data_detail::label_encoding> encoding) {
    entries_.push_back({std::move(image), std::move(label), std::move(name), std::move(encoding)});
  }

  const std::string& title() const noexcept { return title_; }

 private:
  struct entry {
    std::filesystem::path image, label;
    std::string name;
    std::shared_ptr<const data_detail::label_encoding> encoding;
  };

  const entry& at(std::int64_t i, const char* fn) const {
    if (i < 0 || i >= size())
      ::protoseg::detail::fail<value_error>(title_, ": ", fn, "(", i, "): index out of range, the data set has ",
                                            size(), " samples");
    return entries_[static_cast<std::size_t>(i)];
  }

  std::string title_;
  std::filesystem::path root_;
  std::vector<std::string> classes_;
  std::vector<entry> entries_;
};

namespace data_detail {

template <std::size_t N>
std::vector<std::string> to_strings(const std::array<std::string_view, N>& names) {
  return std::vector<std::string>(names.begin(), names.end());
}

[[noreturn]] inline void no_label(const std::string& who, const fs::path& image, const fs::path& label) {
  ::protoseg::detail::fail<io_error>(who, ": the image '", image.string(), "' has no label file: '", label.string(),
                                     "' does not exist");
}

}  // namespace data_detail

// ---- ADE20K --------------------------------------------------------------------------------

/// ADE20K (MIT SceneParsing, `ADEChallengeData2016`): 150 classes.
///
/// Layout: `root/images/<split>/*.jpg` with `root/annotations/<split>/<stem>.png`,
/// where `root` is the `ADEChallengeData2016` directory or its parent, and
/// `split` is "training" (or "train") or "validation" (or "val"). Annotation
/// value 0 ("other") becomes the ignore label and v in 1..150 becomes train
/// id v - 1 (mmsegmentation's `reduce_zero_label`); 255 stays ignored.
class ade20k_dataset : public file_pair_dataset {
 public:
  /// mmsegmentation's ADE20K palette.
  std::vector<rgb_color> palette() const override { return palette_from(ade20k_palette_rgb); }
  /// Lists the split's files; throws `value_error` for an unknown split and
  /// `io_error` naming the directory or file for a missing root, split
  /// directory, images, or label file.
  ade20k_dataset(const std::filesystem::path& root, const std::string& split)
      : file_pair_dataset("ADE20K " + split_name(split), find_root(root), data_detail::to_strings(ade20k_classes)) {
    namespace fs = std::filesystem;
    const std::string s = split_name(split);
    const std::string hint =
        " (expected images/" + s + "/*.jpg and annotations/" + s + "/*.png under '" + this->root().string() + "')";
    const fs::path image_dir = this->root() / "images" / s, label_dir = this->root() / "annotations" / s;
    data_detail::require_dir(image_dir, title(), "the split directory", hint);
    data_detail::require_dir(label_dir, title(), "the annotation directory", hint);
    const auto images = data_detail::list_files(image_dir, false, title(), [](const fs::path& p) {
      return data_detail::lower(p.extension().string()) == ".jpg";
    });
    if (images.empty())
      ::protoseg::detail::fail<io_error>(title(), ": no .jpg images in '", image_dir.string(), "'");
    auto encoding = std::make_shared<data_detail::label_encoding>();
    encoding->to_train_id.fill(-1);
    encoding->to_train_id[0] = 255;
    for (int v = 1; v <= 150; ++v) encoding->to_train_id[static_cast<std::size_t>(v)] = std::int16_t(v - 1);
    encoding->to_train_id[255] = 255;
    encoding->allowed = "ADE20K annotation values 0 (other, ignored) and 1..150 (classes), or 255 (ignored)";
    for (const auto& image : images) {
      const fs::path label = label_dir / (image.stem().string() + ".png");
      if (!data_detail::is_file(label)) data_detail::no_label(title(), image, label);
      add(image, label, image.stem().string(), encoding);
    }
  }

  /// "training" or "validation" for the accepted spellings of a split; throws `value_error` otherwise.
  static std::string split_name(const std::string& split) {
    if (split == "training" || split == "train") return "training";
    if (split == "validation" || split == "val") return "validation";
    ::protoseg::detail::fail<value_error>("ADE20K: unknown split '", split,
                                          "', expected training (or train) or validation (or val)");
  }

 private:
  static std::filesystem::path find_root(const std::filesystem::path& root) {
    data_detail::require_dir(root, "ADE20K", "the root directory");
    if (!data_detail::is_dir(root / "images") && data_detail::is_dir(root / "ADEChallengeData2016"))
      return root / "ADEChallengeData2016";
    return root;
  }
};

// ---- Cityscapes ----------------------------------------------------------------------------

/// Cityscapes with fine annotations: 19 classes.
///
/// Layout: `root/leftImg8bit/<split>/<city>/<x>_leftImg8bit.png` with
/// `root/gtFine/<split>/<city>/<x>_gtFine_labelTrainIds.png` (train ids, used
/// as they are) or, where that file is absent, `<x>_gtFine_labelIds.png`
/// (label ids, mapped with `cityscapes_label_id_to_train_id`; every value
/// that is not one of the 19 classes' ids becomes 255). `split` is "train",
/// "val" or "test".
class cityscapes_dataset : public file_pair_dataset {
 public:
  /// cityscapesScripts' train-id colours.
  std::vector<rgb_color> palette() const override { return palette_from(cityscapes_palette_rgb); }
  /// Lists the split's files; throws `value_error` for an unknown split and
  /// `io_error` naming the directory or file for a missing root, split
  /// directory, images, or label file.
  cityscapes_dataset(const std::filesystem::path& root, const std::string& split)
      : file_pair_dataset("Cityscapes " + check_split(split), root, data_detail::to_strings(cityscapes_classes)) {
    namespace fs = std::filesystem;
    data_detail::require_dir(root, "Cityscapes", "the root directory");
    const std::string hint = " (expected leftImg8bit/" + split + "/<city>/*_leftImg8bit.png and gtFine/" + split +
                             "/<city>/*_gtFine_labelTrainIds.png or *_gtFine_labelIds.png under '" + root.string() +
                             "')";
    const fs::path image_dir = root / "leftImg8bit" / split, label_dir = root / "gtFine" / split;
    data_detail::require_dir(image_dir, title(), "the split directory", hint);
    data_detail::require_dir(label_dir, title(), "the annotation directory", hint);
    static constexpr std::string_view suffix = "_leftImg8bit.png";
    const auto images = data_detail::list_files(image_dir, true, title(), [](const fs::path& p) {
      return data_detail::ends_with(p.filename().string(), suffix);
    });
    if (images.empty())
      ::protoseg::detail::fail<io_error>(title(), ": no *", suffix, " images under '", image_dir.string(), "'");
    const auto train_ids = data_detail::identity_encoding(19);
    auto label_ids = std::make_shared<data_detail::label_encoding>();
    label_ids->to_train_id.fill(255);
    for (std::size_t id = 0; id < cityscapes_label_id_to_train_id.size(); ++id)
      label_ids->to_train_id[id] = cityscapes_label_id_to_train_id[id];
    label_ids->allowed = "any value (label ids)";
    for (const auto& image : images) {
      const std::string file = image.filename().string();
      const std::string stem = file.substr(0, file.size() - suffix.size());
      fs::path rel = image.parent_path().lexically_relative(image_dir);
      if (rel == ".") rel.clear();
      const fs::path dir = label_dir / rel;
      const fs::path trainid_file = dir / (stem + "_gtFine_labelTrainIds.png");
      const fs::path labelid_file = dir / (stem + "_gtFine_labelIds.png");
      if (data_detail::is_file(trainid_file))
        add(image, trainid_file, stem, train_ids);
      else if (data_detail::is_file(labelid_file))
        add(image, labelid_file, stem, label_ids);
      else
        ::protoseg::detail::fail<io_error>(title(), ": the image '", image.string(), "' has no label file: neither '",
                                           trainid_file.string(), "' nor '", labelid_file.string(), "' exists");
    }
  }

 private:
  static std::string check_split(const std::string& split) {
    if (split != "train" && split != "val" && split != "test")
      ::protoseg::detail::fail<value_error>("Cityscapes: unknown split '", split, "', expected train, val or test");
    return split;
  }
};

// ---- COCO-Stuff 164k -----------------------------------------------------------------------

/// COCO-Stuff 164k: 171 classes.
///
/// Layout: `root/images/<split>/<stem>.jpg` with
/// `root/annotations/<split>/<stem>_labelTrainIds.png` (mmsegmentation's
/// converted train ids 0..170 and 255, used as they are) or, where that file
/// is absent, the raw stuff-thing map `<stem>.png` (class ids 0..181 and 255,
/// mapped with `coco_stuff_class_id_to_train_id`). `split` is "train2017"
/// (or "train") or "val2017" (or "val").
class coco_stuff164k_dataset : public file_pair_dataset {
 public:
  /// Lists the split's files; throws `value_error` for an unknown split and
  /// `io_error` naming the directory or file for a missing root, split
  /// directory, images, or label file.
  coco_stuff164k_dataset(const std::filesystem::path& root, const std::string& split)
      : file_pair_dataset("COCO-Stuff 164k " + split_name(split), root, data_detail::to_strings(coco_stuff_classes)) {
    namespace fs = std::filesystem;
    data_detail::require_dir(root, "COCO-Stuff 164k", "the root directory");
    const std::string s = split_name(split);
    const std::string hint = " (expected images/" + s + "/*.jpg and annotations/" + s +
                             "/*_labelTrainIds.png or *.png under '" + root.string() + "')";
    const fs::path image_dir = root / "images" / s, label_dir = root / "annotations" / s;
    data_detail::require_dir(image_dir, title(), "the split directory", hint);
    data_detail::require_dir(label_dir, title(), "the annotation directory", hint);
    const auto images = data_detail::list_files(image_dir, false, title(), [](const fs::path& p) {
      return data_detail::lower(p.extension().string()) == ".jpg";
    });
    if (images.empty())
      ::protoseg::detail::fail<io_error>(title(), ": no .jpg images in '", image_dir.string(), "'");
    const auto train_ids = data_detail::identity_encoding(171);
    auto class_ids = std::make_shared<data_detail::label_encoding>();
    class_ids->to_train_id.fill(-1);
    for (std::size_t id = 0; id < coco_stuff_class_id_to_train_id.size(); ++id)
      class_ids->to_train_id[id] = coco_stuff_class_id_to_train_id[id];
    class_ids->to_train_id[255] = 255;
    class_ids->allowed = "COCO-Stuff class ids 0..181 or the unlabeled value 255";
    for (const auto& image : images) {
      const std::string stem = image.stem().string();
      const fs::path trainid_file = label_dir / (stem + "_labelTrainIds.png");
      const fs::path raw_file = label_dir / (stem + ".png");
      if (data_detail::is_file(trainid_file))
        add(image, trainid_file, stem, train_ids);
      else if (data_detail::is_file(raw_file))
        add(image, raw_file, stem, class_ids);
      else
        ::protoseg::detail::fail<io_error>(title(), ": the image '", image.string(), "' has no label file: neither '",
                                           trainid_file.string(), "' nor '", raw_file.string(), "' exists");
    }
  }

  /// "train2017" or "val2017" for the accepted spellings of a split; throws `value_error` otherwise.
  static std::string split_name(const std::string& split) {
    if (split == "train2017" || split == "train") return "train2017";
    if (split == "val2017" || split == "val") return "val2017";
    ::protoseg::detail::fail<value_error>("COCO-Stuff 164k: unknown split '", split,
                                          "', expected train2017 (or train) or val2017 (or val)");
  }
};

// ---- a folder of pairs ---------------------------------------------------------------------

/// Reads a class list: one name per line, surrounding blanks trimmed, blank
/// lines skipped. Throws `io_error` naming the file when it is missing or
/// holds no name.
inline std::vector<std::string> read_class_list(const std::filesystem::path& path) {
  const std::string text = read_file_bytes(path);
  std::vector<std::string> names;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
    if (!line.empty()) names.emplace_back(line);
    start = end + 1;
  }
  if (names.empty())
    ::protoseg::detail::fail<io_error>("class list '", path.string(),
                                       "' holds no class names (expected one name per line)");
  return names;
}

/// Images with label maps in two parallel directory trees:
/// `images_dir/<rel>/<stem>.<jpg|jpeg|png|bmp>` (extension in any case,
/// sub-directories recursed) with `labels_dir/<rel>/<stem><label_suffix>`, a
/// single-channel label file holding train ids 0..C-1 and 255 (ignored),
/// with C = class_names.size(). The sample name is `<rel>/<stem>`. When both
/// directories are the same, files ending in `label_suffix` are labels, not
/// images.
class folder_dataset : public file_pair_dataset {
 public:
  /// Lists the files; throws `value_error` for no class names or more than
  /// 255, and `io_error` naming the directory or file for a missing
  /// directory, no images, or a missing label file.
  folder_dataset(const std::filesystem::path& images_dir, const std::filesystem::path& labels_dir,
                 std::vector<std::string> class_names, const std::string& label_suffix = ".png")
      : file_pair_dataset("folder data set '" + images_dir.string() + "'", images_dir, std::move(class_names)) {
    namespace fs = std::filesystem;
    if (this->class_names().empty() || this->class_names().size() > 255)
      ::protoseg::detail::fail<value_error>(title(), ": ", this->class_names().size(),
                                            " class names given, expected 1 to 255 (255 is the ignore label)");
    if (label_suffix.empty())
      ::protoseg::detail::fail<value_error>(title(), ": label_suffix is empty, expected e.g. \".png\"");
    data_detail::require_dir(images_dir, "folder data set", "the image directory");
    data_detail::require_dir(labels_dir, "folder data set", "the label directory");
    std::error_code ec;
    const bool same_dir = fs::equivalent(images_dir, labels_dir, ec);
    const auto images = data_detail::list_files(images_dir, true, title(), [&](const fs::path& p) {
      const std::string ext = data_detail::lower(p.extension().string());
      if (ext != ".jpg" && ext != ".jpeg" && ext != ".png" && ext != ".bmp") return false;
      return !(same_dir && data_detail::ends_with(p.filename().string(), label_suffix));
    });
    if (images.empty())
      ::protoseg::detail::fail<io_error>(title(), ": no images (.jpg, .jpeg, .png, .bmp) under '",
                                         images_dir.string(), "'");
    const auto encoding = data_detail::identity_encoding(num_classes());
    std::map<fs::path, fs::path> label_owner;
    for (const auto& image : images) {
      fs::path rel = image.parent_path().lexically_relative(images_dir);
      if (rel == ".") rel.clear();
      const fs::path label = labels_dir / rel / (image.stem().string() + label_suffix);
      if (!data_detail::is_file(label)) data_detail::no_label(title(), image, label);
      if (const auto [it, fresh] = label_owner.emplace(label, image); !fresh)
        ::protoseg::detail::fail<value_error>(title(), ": the images '", it->second.string(), "' and '",
                                              image.string(), "' share the label file '", label.string(),
                                              "'; keep one image per stem");
      add(image, label, (rel / image.stem()).lexically_normal().generic_string(), encoding);
    }
    labels_dir_ = labels_dir;
  }

  std::string description() const override {
    return ::protoseg::detail::concat_message("folder data set: ", size(), size() == 1 ? " image" : " images",
                                              " under ", root().string(),
                                              ", labels under ", labels_dir_.string(), ", ", num_classes(),
                                              " classes");
  }

 private:
  std::filesystem::path labels_dir_;
};

// ---- by name -------------------------------------------------------------------------------

/// A folder data set: `root/images/<split>` with `root/labels/<split>`, or
/// `root/images` with `root/labels` when `root/images` has no split
/// directories (none of train, val, test, training, validation) or `split`
/// is empty; class names from `root/classes.txt`.
inline std::shared_ptr<segmentation_dataset> open_folder_dataset(const std::filesystem::path& root,
                                                                 const std::string& split) {
  namespace fs = std::filesystem;
  data_detail::require_dir(root, "folder data set", "the root directory",
                           " (expected images/, labels/ and classes.txt in it)");
  auto classes = read_class_list(root / "classes.txt");
  const fs::path images = root / "images", labels = root / "labels";
  if (!split.empty() && data_detail::is_dir(images / split))
    return std::make_shared<folder_dataset>(images / split, labels / split, std::move(classes));
  if (!split.empty())
    for (const char* s : {"train", "val", "test", "training", "validation"})
      if (data_detail::is_dir(images / s))
        ::protoseg::detail::fail<io_error>("folder data set: the split directory '", (images / split).string(),
                                           "' does not exist (but '", (images / s).string(), "' does)");
  return std::make_shared<folder_dataset>(images, labels, std::move(classes));
}

/// A data set kind that `open_dataset` knows: its name, other spellings it
/// accepts, a one-line description (for --help and docs), how to open a
/// split of it, and its published class colours (empty when it has none).
struct dataset_kind {
  std::string name;
  std::vector<std::string> aliases;
  std::string summary;
  std::function<std::shared_ptr<segmentation_dataset>(const std::filesystem::path&, const std::string&)> open;
  std::vector<rgb_color> palette;
};

/// Every data set kind `open_dataset` opens, in the order tools list them.
/// A new reader is one class and one row here.
inline const std::vector<dataset_kind>& dataset_kinds() {
  static const std::vector<dataset_kind> kinds = {
      {"ade20k", {"ade"}, "ADE20K (SceneParsing, 150 classes)",
       [](const std::filesystem::path& r, const std::string& s) { return std::make_shared<ade20k_dataset>(r, s); },
       palette_from(ade20k_palette_rgb)},
      {"cityscapes", {}, "Cityscapes fine annotations (19 classes)",
       [](const std::filesystem::path& r, const std::string& s) { return std::make_shared<cityscapes_dataset>(r, s); },
       palette_from(cityscapes_palette_rgb)},
      {"coco-stuff", {"coco_stuff", "coco-stuff164k", "coco_stuff164k"}, "COCO-Stuff 164k (171 classes)",
       [](const std::filesystem::path& r, const std::string& s) {
         return std::make_shared<coco_stuff164k_dataset>(r, s);
       },
       {}},
      {"folder", {}, "images with single-channel label PNGs and a classes.txt", open_folder_dataset, {}},
  };
  return kinds;
}

/// The names of dataset_kinds(), in order.
inline std::vector<std::string> dataset_kind_names() {
  std::vector<std::string> names;
  for (const auto& k : dataset_kinds()) names.push_back(k.name);
  return names;
}

/// The row of dataset_kinds() whose name or alias is `kind` (any case), or
/// null.
inline const dataset_kind* find_dataset_kind(const std::string& kind) {
  const std::string k = data_detail::lower(kind);
  for (const auto& d : dataset_kinds())
    if (k == d.name || std::find(d.aliases.begin(), d.aliases.end(), k) != d.aliases.end()) return &d;
  return nullptr;
}

/// The published palette of a data set kind (a name or alias of
/// dataset_kinds(), any case), without opening the data set; empty for kinds
/// that have none or that are unknown (pictures then use a generated one).
inline std::vector<rgb_color> palette_of_kind(const std::string& kind) {
  const dataset_kind* d = find_dataset_kind(kind);
  return d ? d->palette : std::vector<rgb_color>{};
}

/// Opens a data set by kind (a name or alias of dataset_kinds(), any case):
/// "ade20k", "cityscapes", "coco-stuff" (COCO-Stuff 164k) or "folder" (see
/// open_folder_dataset). Splits "train" and "val" work for every kind.
/// Throws `value_error` for an unknown kind or split, and what the reader
/// throws.
inline std::shared_ptr<segmentation_dataset> open_dataset(const std::string& kind, const std::filesystem::path& root,
                                                          const std::string& split) {
  if (const dataset_kind* d = find_dataset_kind(kind)) return d->open(root, split);
  std::string valid;
  for (const auto& d : dataset_kinds()) valid += (valid.empty() ? "" : ", ") + d.name;
  ::protoseg::detail::fail<value_error>("open_dataset: unknown data set kind '", kind, "'; valid kinds: ", valid);
}

}  // namespace protoseg::data
