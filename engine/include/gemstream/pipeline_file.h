// Declarative pipeline files (pipelines/*.json): a gst-launch graph with typed, documented
// ${parameter} placeholders. Loading validates the file; resolve() validates values and turns
// them into a launch line in which no value can change the graph.
//
// Substitution rules (the guarantee is that the elements, links and property names of the
// resolved line are exactly those of the template, and that each property receives exactly the
// text it was given):
// - A placeholder may only stand in a property value (`name=${param}`, optionally with literal
//   text around it: `location=${dir}/cover.png`), never as an element, a property name, a pad
//   reference or inside a quoted template string.
// - Such a value is emitted as one double-quoted gst-launch string with `\` and `"` escaped;
//   gst_parse_launch strips the quotes and undoes the escapes before it deserialises the value,
//   so int, enum and boolean properties accept it too. A string value that GStreamer would
//   reinterpret after that (exactly "NULL", text that starts and ends with `"`, text ending in
//   a backslash, which the lexer would read as escaping the closing quote) is first wrapped as
//   a serialised GStreamer string, which gst_value_deserialize() unwraps to the exact text.
// - In caps (a link segment that starts with a media type such as `video/x-raw,`), only int,
//   double, bool, duration and enum placeholders are allowed: canonical numbers (or allowed
//   values) produced by the validator, substituted bare (`video/x-raw,height=${height}`).
// - Values are valid UTF-8 without NUL bytes; enum values use only [A-Za-z0-9_+/:.-].
#pragma once

#include "gemstream/export.h"

#include <filesystem>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gemstream {

enum class ParameterType {
  String,   // free text (UTF-8)
  Path,     // a file name; "must-exist": true checks it is an existing file
  Enum,     // one of "allowed"
  Flags,    // a comma-separated, non-empty subset of "allowed" ("mp4,poster")
  Int,      // "min"/"max" inclusive
  Double,   // "min"/"max" inclusive
  Bool,     // true/false (also yes/no, on/off, 1/0)
  Duration, // "500ms", "1.5s", "2m"; substituted as a whole number of "unit" (ns, us, ms, s)
};

GEMSTREAM_API const char *to_string(ParameterType type) noexcept;

struct ParameterSpec {
  std::string name; // kebab-case
  ParameterType type = ParameterType::String;
  std::string doc;
  // Canonical text of the default. Without one the parameter is required, unless `optional`:
  // then a property it is the whole value of is left out of the launch line when no value is
  // given, so the element keeps its own default (and its environment fallbacks).
  std::optional<std::string> default_value;
  bool optional = false;
  std::vector<std::string> allowed; // Enum, Flags
  std::optional<std::string> min;   // Int, Double, Duration: canonical text, as given
  std::optional<std::string> max;
  std::string unit;        // Duration: "ns", "us", "ms" or "s"
  bool must_exist = false; // Path
  // Path: a file the pipeline writes. `gemstream run` has it written under a temporary name
  // and renames it into place after EOS, so a failed or interrupted run leaves no partial file
  // and keeps an earlier file of that name.
  bool output = false;

  bool required() const noexcept { return !default_value && !optional; }
};

// Resolved values: parameter name → canonical text (defaults applied, optional parameters
// without a value absent).
using ParameterValues = std::map<std::string, std::string>;

class GEMSTREAM_API PipelineFile {
public:
  // Parses and validates. Throws Error(Config) naming the file and what is wrong (unknown
  // fields, bad types, placeholders that name no parameter or stand where values may not go,
  // parameters no graph uses, defaults that fail their own validation).
  static PipelineFile load(const std::filesystem::path &file);
  static PipelineFile parse(const std::string &json_text, const std::filesystem::path &name);

  // A path (contains '/' or ends in ".json") is used as is; a bare name is looked up as
  // data_dir()/pipelines/NAME.json. Throws Error(NotFound) listing the installed names.
  static std::filesystem::path find(const std::string &name_or_path);
  // The pipeline files in `dir` (default data_dir()/pipelines), sorted by name.
  static std::vector<std::filesystem::path> list(const std::filesystem::path &dir = {});

  PipelineFile(const PipelineFile &);
  PipelineFile(PipelineFile &&) noexcept;
  PipelineFile &operator=(const PipelineFile &);
  PipelineFile &operator=(PipelineFile &&) noexcept;
  ~PipelineFile();

  const std::string &name() const noexcept;
  const std::string &description() const noexcept;
  // What stopping a run early (Ctrl-C, SIGTERM) means, the file's "interrupt" field: Finish
  // ("finish", the default) ends the input with EOS so the outputs are complete up to that
  // point, as a recording wants; Cancel ("cancel") sets NULL at once and keeps no output, for
  // pipelines whose output is wrong unless the input ran to its end (a loop of the whole clip).
  enum class Interrupt { Finish, Cancel };
  Interrupt interrupt() const noexcept;
  const std::vector<ParameterSpec> &parameters() const noexcept;
  const ParameterSpec *parameter(const std::string &name) const noexcept;
  const std::filesystem::path &source() const noexcept;

  // Validates `values` (unknown names, missing required values, types, ranges, allowed values,
  // files that must exist) and returns them canonicalised with defaults applied. Throws
  // Error(InvalidArgument) naming the file, the parameter and what was expected.
  ParameterValues validate(const std::map<std::string, std::string> &values) const;
  // validate() and substitution: the gst-launch line to run.
  std::string resolve(const std::map<std::string, std::string> &values) const;
  // The parameters whose values the graph and the branches that `values` select substitute
  // (an output of a branch left out is not written, for example); `when` conditions do not
  // count. validate() first, like resolve().
  std::set<std::string> used_parameters(const std::map<std::string, std::string> &values) const;

private:
  struct Impl;
  explicit PipelineFile(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Splits "key=value" arguments (the CLI's and an app's convenience). Throws
// Error(InvalidArgument) for an argument without '=' or with an empty key, and for a key given
// twice.
GEMSTREAM_API std::map<std::string, std::string>
parse_parameter_arguments(const std::vector<std::string> &arguments);

} // namespace gemstream
