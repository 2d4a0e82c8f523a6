#pragma once
/// \file nn_primitives.hpp
/// Deprecated: the layer primitives (conv, norm, resize, pool) are declared with every other primitive in
/// <protoseg/backend/primitives.hpp>. This header forwards there and will be
/// removed in the release after 0.1.

#include "protoseg/backend/primitives.hpp"
