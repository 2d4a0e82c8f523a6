#pragma once
/// \file parallel.hpp
/// Deprecated: the OpenMP helpers moved to <protoseg/backend/parallel.hpp>
/// (they serve host loops of every policy, not only the cpu backend). This
/// header forwards there and will be removed in the release after 0.1.

#include "protoseg/backend/parallel.hpp"
