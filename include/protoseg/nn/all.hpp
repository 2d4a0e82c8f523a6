#pragma once
/// \file all.hpp
/// Every module and layer of protoseg::nn.

#include "protoseg/nn/attention.hpp"
#include "protoseg/nn/conv.hpp"
#include "protoseg/nn/dropout.hpp"
#include "protoseg/nn/functional.hpp"
#include "protoseg/nn/linear.hpp"
#include "protoseg/nn/mix_ffn.hpp"
#include "protoseg/nn/module.hpp"
#include "protoseg/nn/module_list.hpp"
#include "protoseg/nn/norm.hpp"
#include "protoseg/nn/patch_embed.hpp"
#include "protoseg/nn/pool.hpp"
