// An ordered, multi-threaded pipeline: produce (in order, one at a time) -> work (in parallel) ->
// commit (in order, one at a time).
//
// This is what makes the output byte-identical whatever the thread count: blocks are cut the same way
// and committed in the order they were produced. If any step fails, work on later blocks stops and the
// error of the EARLIEST failing block is rethrown, so the reported error does not depend on timing.
// Cancellation (Progress::cancelled) is checked before each block is produced.
#pragma once

#include <cstddef>
#include <functional>

#include "common.hpp"

namespace wideann {

struct PipelineSteps {
  // Called under the pipeline's lock, in order: fill worker `w`'s input; false when there is no more.
  std::function<bool(size_t w)> produce;
  // Called in parallel on worker `w`'s input.
  std::function<void(size_t w)> work;
  // Called in production order, one at a time, e.g. to write worker `w`'s output.
  std::function<void(size_t w)> commit;
};

void run_pipeline(size_t n_threads, Progress& progress, const PipelineSteps& steps);

}  // namespace wideann
