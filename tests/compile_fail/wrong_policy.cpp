// Must NOT compile: a tensor with a type that is not a protoseg policy fails
// with one readable static_assert message (checked by CTest).
#include <protoseg/protoseg.hpp>

struct not_a_policy {};

int main() {
  protoseg::tensor<float, not_a_policy> t;
  return static_cast<int>(t.numel());
}
