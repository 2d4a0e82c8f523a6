#pragma once
/// \file dataset_info.hpp
/// What protoseg knows of each data set besides its files: class names by
/// train id, the label tables that map stored values to train ids, and the
/// colours the data set's own tools draw the classes with. No image I/O
/// here (datasets.hpp holds the readers), so pictures and tools can use the
/// tables without compiling a decoder.

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protoseg/data/dataset.hpp"

namespace protoseg::data {

// ---- class lists and label tables ----------------------------------------------------------

/// The 150 ADE20K (SceneParsing) class names by train id, as mmsegmentation's
/// ADE20KDataset lists them (train id = annotation value - 1).
inline constexpr std::array<std::string_view, 150> ade20k_classes = {
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher",
    "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag"
};

/// The 19 Cityscapes evaluation classes by train id (cityscapesScripts labels.py).
inline constexpr std::array<std::string_view, 19> cityscapes_classes = {
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation", "terrain",
    "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"};

/// Cityscapes label id (0..33, the values of `*_gtFine_labelIds.png`) to train
/// id (0..18, or 255 for classes not evaluated), from cityscapesScripts
/// labels.py. The license plate (id -1) cannot occur in a PNG.
inline constexpr std::array<std::uint8_t, 34> cityscapes_label_id_to_train_id = {
    255, 255, 255, 255, 255, 255, 255,  // unlabeled, ego vehicle, rectification border, out of roi, static, dynamic, ground
    0,   1,                             // road, sidewalk
    255, 255,                           // parking, rail track
    2,   3,   4,                        // building, wall, fence
    255, 255, 255,                      // guard rail, bridge, tunnel
    5,                                  // pole
    255,                                // polegroup
    6,   7,   8,   9,   10,  11,  12,  13,  14,  15,  // traffic light .. bus
    255, 255,                           // caravan, trailer
    16,  17,  18};                      // train, motorcycle, bicycle

/// The 171 COCO-Stuff 164k class names by train id (80 things, then 91 stuff
/// classes), as mmsegmentation's COCOStuffDataset lists them.
inline constexpr std::array<std::string_view, 171> coco_stuff_classes = {
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush", "banner", "blanket", "branch", "bridge", "building-other", "bush",
    "cabinet", "cage", "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
    "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble",
    "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit",
    "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves", "light", "mat", "metal",
    "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other",
    "plastic", "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug",
    "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone",
    "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick",
    "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "waterdrops", "window-blind", "window-other", "wood"
};

namespace data_detail {
// The eleven ids in 0..181 that COCO never assigned (the 2017 category ids
// 12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91, minus one).
inline constexpr std::array<int, 11> coco_stuff_unused_ids = {11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90};

constexpr std::array<std::uint8_t, 182> make_coco_stuff_table() {
  std::array<std::uint8_t, 182> t{};
  int next = 0;
  for (int id = 0; id < 182; ++id) {
    const bool unused = std::find(coco_stuff_unused_ids.begin(), coco_stuff_unused_ids.end(), id) !=
                        coco_stuff_unused_ids.end();
    t[static_cast<std::size_t>(id)] = unused ? std::uint8_t{255} : static_cast<std::uint8_t>(next++);
  }
  return t;
}

template <std::size_t N>
constexpr bool all_named(const std::array<std::string_view, N>& names) {
  for (auto n : names)
    if (n.empty()) return false;
  return true;
}
}  // namespace data_detail

/// COCO-Stuff 164k class id (0..181, the values of the raw stuff-thing maps
/// `stuffthingmaps_trainval2017/*.png`) to train id (0..170), the table of
/// mmsegmentation's tools/dataset_converters/coco_stuff164k.py; the eleven
/// ids COCO never assigned map to 255, as does the unlabeled value 255.
inline constexpr std::array<std::uint8_t, 182> coco_stuff_class_id_to_train_id = data_detail::make_coco_stuff_table();

static_assert(data_detail::all_named(ade20k_classes) && data_detail::all_named(cityscapes_classes) &&
                  data_detail::all_named(coco_stuff_classes),
              "protoseg: a class-name table has fewer names than its size");
static_assert(coco_stuff_class_id_to_train_id[181] == 170 && coco_stuff_class_id_to_train_id[91] == 80,
              "protoseg: the COCO-Stuff table must map 182 ids onto 171 train ids");

/// The 19 Cityscapes train-id colours (road, sidewalk, ..., bicycle), RGB, as
/// cityscapesScripts' labels.py (and mmsegmentation's CityscapesDataset)
/// draw them.
inline constexpr std::array<std::uint8_t, 19 * 3> cityscapes_palette_rgb = {
      128, 64,  128, 244, 35,  232, 70,  70,  70,  102, 102, 156, 190, 153, 153, 153, 153, 153, 250, 170,
      30,  220, 220, 0,   107, 142, 35,  152, 251, 152, 70,  130, 180, 220, 20,  60,  255, 0,   0,   0,
      0,   142, 0,   0,   70,  0,   60,  100, 0,   80,  100, 0,   0,   230, 119, 11,  32};

/// The 150 ADE20K (SceneParsing) colours by train id, RGB, as
/// mmsegmentation's ADE20KDataset draws them (background removed).
inline constexpr std::array<std::uint8_t, 150 * 3> ade20k_palette_rgb = {
      120, 120, 120, 180, 120, 120, 6,   230, 230, 80,  50,  50,  4,   200, 3,   120, 120, 80,  140, 140, 140,
      204, 5,   255, 230, 230, 230, 4,   250, 7,   224, 5,   255, 235, 255, 7,   150, 5,   61,  120, 120, 70,
      8,   255, 51,  255, 6,   82,  143, 255, 140, 204, 255, 4,   255, 51,  7,   204, 70,  3,   0,   102, 200,
      61,  230, 250, 255, 6,   51,  11,  102, 255, 255, 7,   71,  255, 9,   224, 9,   7,   230, 220, 220, 220,
      255, 9,   92,  112, 9,   255, 8,   255, 214, 7,   255, 224, 255, 184, 6,   10,  255, 71,  255, 41,  10,
      7,   255, 255, 224, 255, 8,   102, 8,   255, 255, 61,  6,   255, 194, 7,   255, 122, 8,   0,   255, 20,
      255, 8,   41,  255, 5,   153, 6,   51,  255, 235, 12,  255, 160, 150, 20,  0,   163, 255, 140, 140, 140,
      250, 10,  15,  20,  255, 0,   31,  255, 0,   255, 31,  0,   255, 224, 0,   153, 255, 0,   0,   0,   255,
      255, 71,  0,   0,   235, 255, 0,   173, 255, 31,  0,   255, 11,  200, 200, 255, 82,  0,   0,   255, 245,
      0,   61,  255, 0,   255, 112, 0,   255, 133, 255, 0,   0,   255, 163, 0,   255, 102, 0,   194, 255, 0,
      0,   143, 255, 51,  255, 0,   0,   82,  255, 0,   255, 41,  0,   255, 173, 10,  0,   255, 173, 255, 0,
      0,   255, 153, 255, 92,  0,   255, 0,   255, 255, 0,   245, 255, 0,   102, 255, 173, 0,   255, 0,   20,
      255, 184, 184, 0,   31,  255, 0,   255, 61,  0,   71,  255, 255, 0,   204, 0,   255, 194, 0,   255, 82,
      0,   10,  255, 0,   112, 255, 51,  0,   255, 0,   194, 255, 0,   122, 255, 0,   255, 163, 255, 153, 0,
      0,   255, 10,  255, 112, 0,   143, 255, 0,   82,  0,   255, 163, 255, 0,   255, 235, 0,   8,   184, 170,
      133, 0,   255, 0,   255, 92,  184, 0,   255, 255, 0,   31,  0,   184, 255, 0,   214, 255, 255, 0,   112,
      92,  255, 0,   0,   224, 255, 112, 224, 255, 70,  184, 160, 163, 0,   255, 153, 0,   255, 71,  255, 0,
      255, 0,   163, 255, 204, 0,   255, 0,   143, 0,   255, 235, 133, 255, 0,   255, 0,   235, 245, 0,   255,
      255, 0,   122, 255, 245, 0,   10,  190, 212, 214, 255, 0,   0,   204, 255, 20,  0,   255, 255, 255, 0,
      0,   153, 255, 0,   41,  255, 0,   255, 204, 41,  0,   255, 41,  255, 0,   173, 0,   255, 0,   245, 255,
      71,  0,   255, 122, 0,   255, 0,   255, 184, 0,   92,  255, 184, 255, 0,   0,   133, 255, 255, 214, 0,
      25,  194, 194, 102, 255, 0,   92,  0,   255};

/// A flat RGB table as a palette (one colour per class).
template <std::size_t N>
std::vector<rgb_color> palette_from(const std::array<std::uint8_t, N>& flat) {
  std::vector<rgb_color> p(N / 3);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = {flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]};
  return p;
}

}  // namespace protoseg::data
