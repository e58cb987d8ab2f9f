#include <cstdio>

int main() {
  std::puts("lorank: under construction");
  return 0;
}
