// gemstream::OutputFiles: temporary names beside the final ones, commit renames, everything
// else removed, and the temporary files of killed writers cleaned up.
#include <gemstream/error.h>
#include <gemstream/output_files.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using gemstream::OutputFiles;

namespace {

class OutputFilesTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("gemstream-output-files-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::set<std::string> names() const {
    std::set<std::string> out;
    for (const auto &e : fs::directory_iterator(dir_))
      out.insert(e.path().filename().string());
    return out;
  }

  static void write(const fs::path &p, const std::string &text) {
    std::ofstream(p, std::ios::binary) << text;
  }
  static std::string read(const fs::path &p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  fs::path dir_;
};

// A PID that no process has: a child that has exited and been reaped.
pid_t dead_pid() {
  const pid_t child = fork();
  if (child == 0)
    _exit(0);
  int status = 0;
  waitpid(child, &status, 0);
  return child;
}

} // namespace

TEST_F(OutputFilesTest, WritesBesideTheFinalNameAndRenamesOnCommit) {
  write(dir_ / "loop.mp4", "earlier");
  std::vector<fs::path> committed;
  {
    OutputFiles files;
    const fs::path tmp = files.add(dir_ / "loop.mp4");
    EXPECT_EQ(tmp.parent_path(), dir_);
    const std::string name = tmp.filename().string();
    // ".loop.mp4.<pid>-<16 hex digits>.part": hidden, and naming its writer.
    EXPECT_EQ(name.rfind(".loop.mp4." + std::to_string(getpid()) + "-", 0), 0u) << name;
    EXPECT_EQ(name.size(), std::string(".loop.mp4.").size() + std::to_string(getpid()).size() + 1 +
                               16 + std::string(".part").size())
        << name;
    write(tmp, "new");
    EXPECT_EQ(read(dir_ / "loop.mp4"), "earlier") << "replaced before the commit";
    committed = files.commit(true);
  }
  EXPECT_EQ(committed, std::vector<fs::path>{dir_ / "loop.mp4"});
  EXPECT_EQ(read(dir_ / "loop.mp4"), "new");
  EXPECT_EQ(names(), std::set<std::string>{"loop.mp4"});
}

TEST_F(OutputFilesTest, WhatIsNotCommittedIsRemovedAndEarlierFilesStay) {
  write(dir_ / "poster.jpg", "earlier");
  {
    OutputFiles files;
    write(files.add(dir_ / "poster.jpg"), "half");
    write(files.add(dir_ / "loop.webm"), "half");
  }
  EXPECT_EQ(names(), std::set<std::string>{"poster.jpg"});
  EXPECT_EQ(read(dir_ / "poster.jpg"), "earlier");

  OutputFiles files;
  write(files.add(dir_ / "loop.webm"), "half");
  files.discard();
  EXPECT_EQ(names(), std::set<std::string>{"poster.jpg"});
}

TEST_F(OutputFilesTest, AFileTheRunDidNotWriteIsAnErrorOnlyWhenAllAreRequired) {
  {
    OutputFiles files;
    write(files.add(dir_ / "a.mp4"), "a");
    files.add(dir_ / "b.webm");
    try {
      files.commit(true);
      ADD_FAILURE() << "commit(true) accepted a missing file";
    } catch (const gemstream::Error &e) {
      EXPECT_EQ(e.kind(), gemstream::ErrorKind::Io);
      EXPECT_NE(e.message().find("b.webm"), std::string::npos) << e.message();
    }
  }
  OutputFiles files;
  write(files.add(dir_ / "a.mp4"), "a");
  files.add(dir_ / "b.webm");
  EXPECT_EQ(files.commit(false), std::vector<fs::path>{dir_ / "a.mp4"});
  EXPECT_EQ(names(), std::set<std::string>{"a.mp4"});
}

TEST_F(OutputFilesTest, AnOutputThatCannotBeWrittenFailsBeforeAnyWork) {
  OutputFiles files;
  files.add(dir_ / "loop.mp4");
  files.check_writable();
  EXPECT_TRUE(names().empty()) << "the check leaves no file";
  files.add(dir_ / "missing" / "loop.webm");
  try {
    files.check_writable();
    ADD_FAILURE() << "a file in a missing directory passed the check";
  } catch (const gemstream::Error &e) {
    EXPECT_EQ(e.kind(), gemstream::ErrorKind::Io);
    EXPECT_EQ(e.message(), "cannot write " + (dir_ / "missing" / "loop.webm").string() +
                               ": No such file or directory");
  }
}

TEST_F(OutputFilesTest, TemporaryFilesOfAKilledWriterAreRemovedOnceStale) {
  const auto old =
      fs::file_time_type::clock::now() - OutputFiles::kStaleAfter - std::chrono::minutes(1);
  const std::string dead = std::to_string(dead_pid());
  const std::string parent = std::to_string(getppid()); // alive
  const std::map<std::string, std::pair<bool, bool>> files = {
      // name -> (old, removed)
      {".loop.mp4." + dead + "-0123456789abcdef.part", {true, true}},
      {".loop.mp4." + dead + "-fedcba9876543210.part", {false, false}},  // may still be written
      {".loop.mp4." + parent + "-0123456789abcdef.part", {true, false}}, // its writer runs
      {".loop.webm." + dead + "-0123456789abcdef.part", {true, false}},  // another final name
      {".loop.mp4.0123456789abcdef.part", {true, false}},                // no writer in the name
      {"loop.mp4." + dead + "-0123456789abcdef.part", {true, false}},    // not ours: not hidden
      {".loop.mp4." + dead + "-0123456789abcdeX.part", {true, false}},
      {".loop.mp4." + dead + "-0123456789abcdef.partial", {true, false}},
  };
  for (const auto &[name, how] : files) {
    write(dir_ / name, "x");
    if (how.first)
      fs::last_write_time(dir_ / name, old);
  }
  OutputFiles outputs;
  const fs::path mine = outputs.add(dir_ / "loop.mp4");
  for (const auto &[name, how] : files)
    EXPECT_EQ(fs::exists(dir_ / name), !how.second) << name;
  EXPECT_FALSE(fs::exists(mine)) << "nothing written yet";
}
