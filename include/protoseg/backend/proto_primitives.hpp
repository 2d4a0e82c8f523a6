#pragma once
/// \file proto_primitives.hpp
/// Deprecated: the prototype primitive are declared with every other primitive in
/// <protoseg/backend/primitives.hpp>. This header forwards there and will be
/// removed in the release after 0.1.

#include "protoseg/backend/primitives.hpp"
