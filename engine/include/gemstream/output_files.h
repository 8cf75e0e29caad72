// Files a job writes, put in place only when it succeeds: each is written under a hidden
// temporary name beside its final one ("dir/.name.<pid>-<random>.part") and renamed by
// commit(), an atomic step per file. Whatever is not committed is removed, so a failed or
// interrupted job leaves no partial file and keeps an earlier file of the same name.
//
// A process killed outright (SIGKILL, the OOM killer, a power cut) cannot remove its
// temporary files. add() removes those left beside the same final name by a process that no
// longer exists, once they have not changed for kStaleAfter.
#pragma once

#include "gemstream/export.h"

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace gemstream {

class GEMSTREAM_API OutputFiles {
public:
  static constexpr std::chrono::minutes kStaleAfter{10};

  OutputFiles();
  ~OutputFiles();
  OutputFiles(const OutputFiles &) = delete;
  OutputFiles &operator=(const OutputFiles &) = delete;

  // Registers `final_path`; returns the temporary path to write instead.
  std::filesystem::path add(const std::filesystem::path &final_path);

  // Creates and removes each temporary file, so that an output that cannot be written (a
  // read-only or missing directory) fails before any work: Error(Io) naming the final file
  // and the reason.
  void check_writable() const;

  // Removes the temporary files (a failed run, or before running again).
  void discard() noexcept;

  // Renames every temporary file to its final name and returns the final names, in the order
  // added. A file that was not written is an error with `all_written`, skipped otherwise (a
  // branch of the pipeline that did not run). Throws Error(Io) naming the file; the temporary
  // files not renamed yet are removed.
  std::vector<std::filesystem::path> commit(bool all_written);

private:
  struct Entry {
    std::filesystem::path final_path, temporary;
  };
  std::string token_;
  std::vector<Entry> entries_;
};

} // namespace gemstream
