#include "gemstream/output_files.h"

#include "gemstream/error.h"

#include <cstdio>
#include <random>
#include <system_error>

namespace gemstream {
namespace fs = std::filesystem;

namespace {

std::string random_token() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

} // namespace

OutputFiles::OutputFiles() : token_(random_token()) {}

OutputFiles::~OutputFiles() {
  discard();
}

fs::path OutputFiles::add(const fs::path &final_path) {
  fs::path temporary =
      final_path.parent_path() / ("." + final_path.filename().string() + "." + token_ + ".part");
  entries_.push_back({final_path, temporary});
  return temporary;
}

void OutputFiles::discard() noexcept {
  for (const Entry &e : entries_) {
    std::error_code ec;
    fs::remove(e.temporary, ec);
  }
}

std::vector<fs::path> OutputFiles::commit(bool all_written) {
  std::vector<fs::path> done;
  for (const Entry &e : entries_) {
    std::error_code ec;
    if (!fs::exists(e.temporary, ec)) {
      if (!all_written)
        continue;
      throw Error(ErrorKind::Io, "the pipeline ended without writing " + e.final_path.string());
    }
    fs::rename(e.temporary, e.final_path, ec);
    if (ec)
      throw Error(ErrorKind::Io, "cannot move the finished " + e.final_path.filename().string() +
                                     " into place at " + e.final_path.string() + ": " +
                                     ec.message());
    done.push_back(e.final_path);
  }
  entries_.clear();
  return done;
}

} // namespace gemstream
