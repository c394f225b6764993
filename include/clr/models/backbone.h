// Which backbone a run starts from (a run config's [backbone] table), and the backbone
// file format `clr pretrain` writes: torchvision-named safetensors whose metadata says
// "format": "clr.backbone/1" and describes the architecture, the input size and how
// the weights were made.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "clr/core/settings.h"
#include "clr/core/tensor_map.h"
#include "clr/models/resnet.h"

namespace clr::models {

struct BackboneConfig {
  std::string weights;              // weight file (safetensors or .pth); empty: random init of arch
  std::optional<std::string> arch;  // unset: the file's metadata, else resnet18
  std::optional<bool> small_stem;   // unset: the file's metadata, else false
  int64_t kernel = 3;               // the CLR kernel size of the adapters put on it

  // --backbone: an existing weight file, or an architecture name for a random backbone
  // (NotFoundError naming both readings otherwise).
  void set_source(const std::string& file_or_arch);
  // Checks that the weight file exists, reads its metadata (read_backbone_info) and
  // fills what was not set, so the stored configuration says what really runs.
  void resolve();
  const std::string& arch_name() const;  // after resolve()
  bool has_small_stem() const { return small_stem.value_or(false); }
};
void to_json(settings::Json& j, const BackboneConfig& c);
void from_json(const settings::Json& j, BackboneConfig& c);

// A feature-mode ResNet as `config` (resolved) says: random, or loaded strictly from
// its weight file (the file's fc, if any, skipped).
ResNet load_backbone(const BackboneConfig& config);

inline constexpr const char* kBackboneFormat = "clr.backbone/1";

// What a clr.backbone/1 file's metadata holds (every value is stored as a string).
struct BackboneFileInfo {
  std::string arch;
  bool small_stem = false;
  int64_t input_size = 0;            // pixels it was trained at
  std::vector<std::string> classes;  // the pretraining classes ("task/class" over several tasks)
  std::string data;                  // where the images came from
  int64_t train_images = 0;
  std::string command;               // the command line that made it
  uint64_t seed = 0;
  int64_t epochs = 0;                // epochs run
  int64_t best_epoch = 0;
  double val_accuracy = 0;           // of the val_metric
  std::string mode;                  // supervised | simclr
  std::string val_metric;            // classifier | knn
  std::string device;
  double wall_seconds = 0;
  std::string libtorch;
  std::string dtype;                 // F32 | F16
  std::string monitor;               // the held-out data of the transfer monitor ("" without one)
  std::string curve;                 // JSON: per epoch, loss, val and monitor accuracy ("" in older files)
};

// Writes `weights` (torchvision names, without fc for a self-supervised backbone) with
// info as clr.backbone/1 metadata, crash-safely.
void write_backbone_file(const std::string& path, const TensorMap& weights, const BackboneFileInfo& info);

// The clr.backbone metadata of a safetensors file; std::nullopt for a file without it
// (a .pth, a torchvision export). A file that claims another clr.backbone version, an
// unknown architecture or values that do not parse is a FormatError naming the file
// and the field.
std::optional<BackboneFileInfo> read_backbone_info(const std::string& path);

}  // namespace clr::models
