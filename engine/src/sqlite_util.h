// SQLite RAII shared by the engine's embedded databases (the cost ledger) and the gateway's job
// store. Header-only and internal: each library compiles its own copy, nothing is exported.
// Every failure is Error(Io) naming the database ("cost ledger /path: step failed: ...").
#pragma once

#include "gemstream/error.h"

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace gemstream::sqlite {

struct DbCloser {
  void operator()(sqlite3 *db) const noexcept { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

// A prepared statement. `what` names the database in errors ("cost ledger"); `what` and `path`
// must outlive the statement.
class Statement {
public:
  Statement(sqlite3 *db, const char *sql, std::string_view what, const std::filesystem::path &path)
      : db_(db), what_(what), path_(path) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK)
      fail("prepare");
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement &) = delete;
  Statement &operator=(const Statement &) = delete;

  Statement &bind(int i, const std::string &v) {
    check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Statement &bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Statement &bind(int i, double v) {
    check(sqlite3_bind_double(stmt_, i, v));
    return *this;
  }
  // True while rows come; false when done.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW)
      return true;
    if (rc == SQLITE_DONE)
      return false;
    fail("step");
  }
  // Runs an INSERT, UPDATE or DELETE; returns the number of rows it changed.
  int update() {
    step();
    return sqlite3_changes(db_);
  }
  std::string text(int col) const {
    const auto *p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char *>(p),
                           static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }
  std::int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
  double real(int col) const { return sqlite3_column_double(stmt_, col); }

private:
  void check(int rc) {
    if (rc != SQLITE_OK)
      fail("bind");
  }
  [[noreturn]] void fail(const char *step) const {
    throw Error(ErrorKind::Io, std::string(what_) + " " + path_.string() + ": " + step +
                                   " failed: " + sqlite3_errmsg(db_));
  }

  sqlite3 *db_;
  sqlite3_stmt *stmt_ = nullptr;
  std::string_view what_;
  const std::filesystem::path &path_;
};

// Runs SQL without results (schema, pragmas, transactions).
inline void exec(sqlite3 *db, const char *sql, std::string_view what,
                 const std::filesystem::path &path) {
  char *err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string message = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    throw Error(ErrorKind::Io, std::string(what) + " " + path.string() + ": " + message);
  }
}

} // namespace gemstream::sqlite
