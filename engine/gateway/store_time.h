// Job store times as stored: milliseconds since the Unix epoch, 0 for "never". Shared by the
// SQLite and Redis stores so both write the same values.
#pragma once

#include "gemstream/job_store.h"

#include <chrono>
#include <cstdint>

namespace gemstream::gateway {

inline std::int64_t to_ms(TimePoint t) {
  if (t == TimePoint{})
    return 0;
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

inline TimePoint from_ms(std::int64_t ms) {
  if (ms == 0)
    return {};
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::milliseconds(ms)));
}

} // namespace gemstream::gateway
