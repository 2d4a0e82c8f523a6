#pragma once
/// \file checkpoint.hpp
/// Training checkpoints: the model state (parameters and buffers, the
/// prototypes among them), the optimiser state and string metadata (the
/// iteration, the configuration as JSON, ...) in one safetensors file.
/// Model entries are stored under "model/<name>", optimiser entries under
/// "optimizer/<name>", and the metadata key "format" is
/// "protoseg-checkpoint-1". The file is written atomically (temporary file,
/// then rename), so an interrupted save never destroys the previous one.

#include <map>
#include <string>

#include "protoseg/error.hpp"
#include "protoseg/io/safetensors.hpp"

namespace protoseg::io {

/// The format tag written into and expected from checkpoint files.
inline constexpr const char* checkpoint_format = "protoseg-checkpoint-1";

/// What a checkpoint holds.
struct checkpoint {
  safetensors_archive model;      ///< module state, keys as `state_dict()` names them
  safetensors_archive optimizer;  ///< optimiser state, keys as the optimiser names them
  std::map<std::string, std::string> metadata;
};

/// Writes `c` to `path` atomically.
inline void save_checkpoint(const std::string& path, const checkpoint& c) {
  safetensors_archive a;
  for (const auto& [k, t] : c.model.tensors) a.tensors["model/" + k] = t;
  for (const auto& [k, t] : c.optimizer.tensors) a.tensors["optimizer/" + k] = t;
  a.metadata = c.metadata;
  a.metadata["format"] = checkpoint_format;
  write_safetensors(path, a);
}

/// Whether an archive carries the checkpoint format tag.
inline bool is_checkpoint(const safetensors_archive& a) {
  auto f = a.metadata.find("format");
  return f != a.metadata.end() && f->second == checkpoint_format;
}

/// Splits an archive already read from `path` into a checkpoint (see
/// `load_checkpoint`; `path` is for messages).
inline checkpoint checkpoint_from_archive(safetensors_archive a, const std::string& path) {
  auto f = a.metadata.find("format");
  if (!is_checkpoint(a))
    ::protoseg::detail::fail<io_error>("checkpoint '", path, "': not a protoseg checkpoint (metadata 'format' is ",
                           f == a.metadata.end() ? std::string("missing") : "'" + f->second + "'", ", expected '",
                           checkpoint_format, "')");
  checkpoint c;
  for (auto& [k, t] : a.tensors) {
    if (k.rfind("model/", 0) == 0) c.model.tensors[k.substr(6)] = std::move(t);
    else if (k.rfind("optimizer/", 0) == 0) c.optimizer.tensors[k.substr(10)] = std::move(t);
    else ::protoseg::detail::fail<io_error>("checkpoint '", path, "': unexpected entry '", k, "' (expected model/... or optimizer/...)");
  }
  if (c.model.tensors.empty()) ::protoseg::detail::fail<io_error>("checkpoint '", path, "': holds no model state");
  a.metadata.erase("format");
  c.metadata = std::move(a.metadata);
  return c;
}

/// Reads a checkpoint written by `save_checkpoint`. A file that is not a
/// safetensors file, or one without the checkpoint format tag (e.g. a bare
/// weights file), throws `io_error` naming the file.
inline checkpoint load_checkpoint(const std::string& path) {
  return checkpoint_from_archive(read_safetensors(path), path);
}

}  // namespace protoseg::io
