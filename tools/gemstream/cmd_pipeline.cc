// gemstream run / inspect / pipelines: declarative pipeline files from the command line, run
// through the embedding API.
#include "cli_args.h"
#include "commands.h"
#include "pipeline_runner.h"

#include <gemstream/config.h>
#include <gemstream/output_files.h>
#include <gemstream/pipeline.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace gemstream::cli {
namespace {

namespace fs = std::filesystem;

struct Invocation {
  std::string file;
  std::map<std::string, std::string> values;
  bool quiet = false;
};

Invocation parse(const std::vector<std::string> &argv, const char *usage, bool allow_quiet) {
  Invocation inv;
  std::vector<std::string> assignments;
  for (const auto &arg : argv) {
    if (allow_quiet && (arg == "-q" || arg == "--quiet")) {
      inv.quiet = true;
    } else if (arg.rfind("-", 0) == 0 && arg.find('=') == std::string::npos) {
      throw UsageError("unknown option " + arg + "\n" + usage);
    } else if (inv.file.empty()) {
      inv.file = arg;
    } else {
      assignments.push_back(arg);
    }
  }
  if (inv.file.empty())
    throw UsageError(usage);
  try {
    inv.values = parse_parameter_arguments(assignments);
  } catch (const Error &e) {
    throw UsageError(e.message());
  }
  return inv;
}

// Validation errors are the user's to fix: exit code 2, like other usage errors.
std::string resolve(const PipelineFile &file, const std::map<std::string, std::string> &values) {
  try {
    return file.resolve(values);
  } catch (const Error &e) {
    if (e.kind() == ErrorKind::InvalidArgument)
      throw UsageError(e.message());
    throw;
  }
}

// A duration default, stored in the property's unit, as a person writes it ("1s").
std::string readable_duration(const std::string &value, const std::string &unit) {
  static const std::pair<const char *, double> kUnits[] = {
      {"ns", 1}, {"us", 1e3}, {"ms", 1e6}, {"s", 1e9}};
  double ns = std::strtod(value.c_str(), nullptr);
  for (const auto &[name, scale] : kUnits)
    if (unit == name)
      ns *= scale;
  for (auto it = std::rbegin(kUnits); it != std::rend(kUnits); ++it) {
    if (ns >= it->second && std::fmod(ns, it->second) == 0) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.0f%s", ns / it->second, it->first);
      return buf;
    }
  }
  return value + unit;
}

std::string describe_default(const ParameterSpec &p) {
  if (p.default_value && p.type == ParameterType::Duration)
    return "default " + readable_duration(*p.default_value, p.unit);
  if (p.default_value)
    return "default " + (p.default_value->empty() ? std::string("\"\"") : *p.default_value);
  return p.optional ? "optional" : "required";
}

std::string describe_type(const ParameterSpec &p) {
  std::string type = to_string(p.type);
  if (!p.allowed.empty()) {
    type += ": ";
    for (std::size_t i = 0; i < p.allowed.size(); ++i)
      type += (i ? "|" : "") + p.allowed[i];
  }
  if (p.min || p.max)
    type += " [" + p.min.value_or("") + ".." + p.max.value_or("") + "]";
  if (p.type == ParameterType::Duration)
    type += " (e.g. 500ms, 2s)";
  if (p.output)
    type += " (written)";
  return type;
}

// The files a run writes (path parameters marked "output"): written under temporary names and
// put in place after EOS only (OutputFiles).
void write_outputs_aside(const PipelineFile &file, std::map<std::string, std::string> &values,
                         OutputFiles &outputs) {
  const auto value_of = [&](const ParameterSpec &p) {
    auto given = values.find(p.name);
    return given != values.end() ? given->second : p.default_value.value_or(std::string());
  };
  // Only the outputs the selected branches write (formats=mp4 writes no WebM).
  const std::set<std::string> used = file.used_parameters(values);
  const auto written = [&](const ParameterSpec &p) {
    return p.output && used.count(p.name) && !value_of(p).empty();
  };
  // Before any work: outputs that are directories, that share a file, or that are an input.
  std::map<fs::path, std::string> claimed; // absolute path -> the output parameter naming it
  for (const ParameterSpec &p : file.parameters()) {
    if (!written(p))
      continue;
    const std::string path = value_of(p);
    std::error_code ec;
    if (fs::is_directory(path, ec))
      throw UsageError("parameter '" + p.name + "': " + path +
                       " is a directory; give the file to write");
    const fs::path absolute = fs::absolute(path, ec).lexically_normal();
    if (auto [it, added] = claimed.emplace(absolute, p.name); !added)
      throw UsageError("parameters '" + it->second + "' and '" + p.name + "' both write " + path +
                       "; give each output a file of its own");
    for (const ParameterSpec &input : file.parameters())
      if (input.must_exist && !value_of(input).empty() &&
          fs::equivalent(value_of(input), path, ec))
        throw UsageError("parameter '" + p.name + "': " + path + " is the input '" + input.name +
                         "', which the run would replace; write it elsewhere");
  }
  for (const ParameterSpec &p : file.parameters()) {
    if (!written(p))
      continue;
    const std::string path = value_of(p);
    if (const fs::path dir = fs::path(path).parent_path(); !dir.empty())
      fs::create_directories(dir); // as gemstream loop does for --out
    values[p.name] = outputs.add(path).string();
  }
}

void print_file(const PipelineFile &file) {
  std::printf("%s\n  %s\n  file: %s\n", file.name().c_str(), file.description().c_str(),
              file.source().c_str());
  for (const auto &p : file.parameters()) {
    std::printf("  %-16s %s; %s\n  %-16s %s\n", p.name.c_str(), describe_type(p).c_str(),
                describe_default(p).c_str(), "", p.doc.c_str());
  }
}

// The README's pipeline reference (tools/gen-element-docs.sh): one section per file.
void print_markdown(const PipelineFile &file) {
  auto cell = [](std::string text) {
    std::string out;
    for (char c : text)
      out += c == '|' ? std::string("\\|") : std::string(1, c);
    return out;
  };
  std::printf("### `%s`\n\n%s\n\n", file.name().c_str(), file.description().c_str());
  std::printf("| parameter | type | default | description |\n|---|---|---|---|\n");
  for (const auto &p : file.parameters()) {
    std::string def = describe_default(p);
    if (def.rfind("default ", 0) == 0)
      def = "`" + def.substr(8) + "`";
    std::printf("| `%s` | %s | %s | %s |\n", p.name.c_str(), cell(describe_type(p)).c_str(),
                cell(def).c_str(), cell(p.doc).c_str());
  }
  std::printf("\n");
}

} // namespace

const char *const kRunUsage =
    "usage: gemstream run FILE [NAME=VALUE ...] [-q]\n"
    "Runs a pipeline file (a path, or a name from `gemstream pipelines`) with its parameters.\n"
    "Ctrl-C stops cleanly: EOS first, so files are complete, then NULL; a file whose \"interrupt\"\n"
    "is \"cancel\" (background-loop) stops at once and keeps nothing. Output files are put in\n"
    "place after EOS only; a failed run leaves none and keeps earlier ones. Exit code: 0 after\n"
    "EOS, 1 after an error, 2 for a bad parameter, 130 when interrupted before EOS.";
const char *const kInspectUsage =
    "usage: gemstream inspect FILE [NAME=VALUE ...]\n"
    "Prints the gst-launch line FILE resolves to with these parameters (nothing is run).";
const char *const kPipelinesUsage =
    "usage: gemstream pipelines [--markdown]\n"
    "Lists the installed pipeline files with their descriptions and parameters (--markdown: as\n"
    "the README's reference tables).";

int cmd_run(const std::vector<std::string> &argv) {
  Invocation inv = parse(argv, kRunUsage, true);
  const PipelineFile file = PipelineFile::load(PipelineFile::find(inv.file));
  resolve(file, inv.values);
  OutputFiles outputs;
  write_outputs_aside(file, inv.values, outputs);
  outputs.check_writable();
  PipelineRunner runner(Pipeline::from_file(file, inv.values));
  runner.quiet = inv.quiet;
  runner.cancel_on_interrupt = file.interrupt() == PipelineFile::Interrupt::Cancel;
  RunOutcome outcome = runner.run();
  if (outcome.eos && outcome.error.empty()) {
    try {
      outputs.commit(false); // a branch that did not run (a format not asked for) wrote nothing
    } catch (const Error &e) {
      std::fprintf(stderr, "error: %s\n", e.message().c_str());
      return 1;
    }
  }
  if (outcome.usd > 0)
    std::printf("total cost: $%.3f\n", outcome.usd);
  if (outcome.eos && outcome.error.empty())
    std::printf("%s: done\n", file.name().c_str());
  else if (!outcome.error.empty() && !outcome.operation.empty())
    std::fprintf(stderr, "resume with: gemstream run %s operation=%s ...\n", inv.file.c_str(),
                 outcome.operation.c_str());
  return report_outcome(outcome);
}

int cmd_inspect(const std::vector<std::string> &argv) {
  Invocation inv = parse(argv, kInspectUsage, false);
  const PipelineFile file = PipelineFile::load(PipelineFile::find(inv.file));
  std::printf("%s\n", resolve(file, inv.values).c_str());
  return 0;
}

int cmd_pipelines(const std::vector<std::string> &argv) {
  const bool markdown = argv.size() == 1 && argv[0] == "--markdown";
  if (!argv.empty() && !markdown)
    throw UsageError(kPipelinesUsage);
  const auto files = PipelineFile::list();
  if (files.empty()) {
    std::fprintf(stderr, "no pipeline files in %s\n", (data_dir() / "pipelines").c_str());
    return 1;
  }
  int rc = 0;
  bool first = true;
  for (const auto &path : files) {
    try {
      const PipelineFile file = PipelineFile::load(path);
      if (markdown) {
        print_markdown(file);
        continue;
      }
      if (!first)
        std::printf("\n");
      first = false;
      print_file(file);
    } catch (const Error &e) {
      std::fprintf(stderr, "%s\n", e.what());
      rc = 1;
    }
  }
  return rc;
}

} // namespace gemstream::cli
