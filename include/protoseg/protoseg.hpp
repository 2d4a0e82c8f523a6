#pragma once
/// \file protoseg.hpp
/// Umbrella header: everything a user of protoseg needs.
///
///   #include <protoseg/protoseg.hpp>
///
/// The cpu backend (Eigen) is always available. The cuda backend is added by
/// including <protoseg/cuda.hpp> from a translation unit compiled with nvcc,
/// or with g++ against Thrust's OpenMP device system.

#include "protoseg/config.hpp"
#include "protoseg/error.hpp"
#include "protoseg/fwd.hpp"

#include "protoseg/backend/default.hpp"

#include "protoseg/tensor/creation.hpp"
#include "protoseg/tensor/math.hpp"
#include "protoseg/tensor/print.hpp"
#include "protoseg/tensor/random.hpp"
#include "protoseg/tensor/shape.hpp"
#include "protoseg/tensor/tensor.hpp"

#include "protoseg/autograd/grad_mode.hpp"
#include "protoseg/autograd/gradcheck.hpp"
#include "protoseg/autograd/variable.hpp"

#include "protoseg/ops/arithmetic.hpp"
#include "protoseg/ops/class_max.hpp"
#include "protoseg/ops/conv.hpp"
#include "protoseg/ops/dropout.hpp"
#include "protoseg/ops/layout.hpp"
#include "protoseg/ops/matmul.hpp"
#include "protoseg/ops/norm.hpp"
#include "protoseg/ops/pool.hpp"
#include "protoseg/ops/reduction.hpp"
#include "protoseg/ops/resize.hpp"
#include "protoseg/ops/softmax.hpp"
#include "protoseg/ops/unary.hpp"

#include "protoseg/loss/cross_entropy.hpp"

#include "protoseg/ot/assignment.hpp"
#include "protoseg/ot/device.hpp"
#include "protoseg/ot/greenkhorn.hpp"
#include "protoseg/ot/segmented.hpp"
#include "protoseg/ot/sinkhorn.hpp"

#include "protoseg/optim/sgd.hpp"
#include "protoseg/optim/param_group.hpp"
#include "protoseg/optim/adamw.hpp"
#include "protoseg/optim/schedule.hpp"
#include "protoseg/metrics/confusion.hpp"

#include "protoseg/io/safetensors.hpp"
#include "protoseg/nn/all.hpp"

#include "protoseg/loss/prototype.hpp"
#include "protoseg/models/fcn_head.hpp"
#include "protoseg/models/mit.hpp"
#include "protoseg/models/model.hpp"
#include "protoseg/models/resnet.hpp"
#include "protoseg/models/segformer_head.hpp"
#include "protoseg/proto/head.hpp"
#include "protoseg/proto/loss.hpp"
#include "protoseg/proto/scores.hpp"
#include "protoseg/proto/step.hpp"

#include "protoseg/data/fashion_mnist.hpp"
#include "protoseg/data/idx.hpp"
#include "protoseg/io/npy.hpp"
#include "protoseg/io/checkpoint.hpp"
#include "protoseg/models/inference.hpp"
#include "protoseg/data/dataset.hpp"
#include "protoseg/data/fashion_scenes.hpp"
#include "protoseg/data/transforms.hpp"
#include "protoseg/data/loader.hpp"

// Not included here: <protoseg/data/image_write.hpp>, image_read.hpp and
// datasets.hpp (they compile stb, Debian libstb-dev, into the including
// translation unit) and <protoseg/cuda.hpp> (needs Thrust).
