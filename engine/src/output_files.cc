#include "gemstream/output_files.h"

#include "gemstream/error.h"

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <random>
#include <string_view>
#include <system_error>
#include <fcntl.h>
#include <unistd.h>

namespace gemstream {
namespace fs = std::filesystem;

namespace {

// "<pid>-<16 hex digits>": the writer's process, then a random part for writers in other
// processes (or PID namespaces) and for runs of this process.
std::string random_token() {
  std::random_device rd;
  char buf[48];
  std::snprintf(buf, sizeof buf, "%ld-%08x%08x", static_cast<long>(::getpid()), rd(), rd());
  return buf;
}

// The writer's PID in a temporary name of `final_name` (".final_name.<pid>-<hex>.part"), or 0.
long writer_pid(std::string_view file, const std::string &final_name) {
  const std::string prefix = "." + final_name + ".";
  constexpr std::string_view suffix = ".part";
  if (file.size() <= prefix.size() + suffix.size() || file.substr(0, prefix.size()) != prefix ||
      file.substr(file.size() - suffix.size()) != suffix)
    return 0;
  const std::string_view token =
      file.substr(prefix.size(), file.size() - prefix.size() - suffix.size());
  long pid = 0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), pid);
  if (ec != std::errc() || end == token.data() + token.size() || *end != '-' || pid <= 0 ||
      token.size() - static_cast<size_t>(end - token.data()) != 17 ||
      token.find_first_not_of("0123456789abcdef", static_cast<size_t>(end - token.data()) + 1) !=
          std::string_view::npos)
    return 0;
  return pid;
}

// Removes the temporary files of `final_path` whose writer has gone and that have not changed
// for OutputFiles::kStaleAfter. A PID that exists (or that is not ours to signal) keeps its
// files, whatever process it now is.
void remove_stale(const fs::path &final_path) {
  std::error_code ec;
  const fs::path dir = final_path.parent_path().empty() ? fs::path(".") : final_path.parent_path();
  const std::string name = final_path.filename().string();
  const auto now = fs::file_time_type::clock::now();
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string file = it->path().filename().string();
    const long pid = writer_pid(file, name);
    if (pid == 0 || pid == static_cast<long>(::getpid()))
      continue;
    std::error_code time_ec;
    const auto changed = fs::last_write_time(it->path(), time_ec);
    if (time_ec || now - changed < OutputFiles::kStaleAfter)
      continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH)
      continue;
    std::error_code remove_ec;
    fs::remove(it->path(), remove_ec);
  }
}

} // namespace

OutputFiles::OutputFiles() : token_(random_token()) {}

OutputFiles::~OutputFiles() {
  discard();
}

fs::path OutputFiles::add(const fs::path &final_path) {
  remove_stale(final_path);
  fs::path temporary =
      final_path.parent_path() / ("." + final_path.filename().string() + "." + token_ + ".part");
  entries_.push_back({final_path, temporary});
  return temporary;
}

void OutputFiles::check_writable() const {
  for (const Entry &e : entries_) {
    const int fd = ::open(e.temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
      throw Error(ErrorKind::Io, "cannot write " + e.final_path.string() + ": " +
                                     std::generic_category().message(errno));
    ::close(fd);
    ::unlink(e.temporary.c_str());
  }
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
