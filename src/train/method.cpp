#include "clr/train/method.h"

#include "clr/core/error.h"

namespace clr::train {

void Method::resume(const std::vector<TaskInfo>&, const TensorMap&) {
  CLR_CHECK(false, ConfigError, "method '", name(), "' cannot resume a stopped run");
}

}  // namespace clr::train
