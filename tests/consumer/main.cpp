// Computes a small loss and its gradients with the installed protoseg.
#include <protoseg/protoseg.hpp>

#include <cmath>
#include <cstdio>

int main() {
  using namespace protoseg;
  generator gen(42);
  variable<float> w(randn<float>({4, 3}, gen, 0.f, 0.1f), true);
  tensor<float> x = randn<float>({5, 4}, gen);
  tensor<std::int64_t> y = tensor<std::int64_t>::from_vector({0, 1, 2, 1, 0}, {5});
  auto loss = cross_entropy(matmul(variable<float>(x), w), y);
  loss.backward();
  const float l = loss.value().item();
  const float g = sum(abs(w.grad())).item();
  std::printf("consumer: protoseg %s, loss %.6f, |grad| %.6f\n", PROTOSEG_VERSION_STRING, l, g);
  return (std::isfinite(l) && l > 0.f && g > 0.f) ? 0 : 1;
}
