// Pipeline files: loading, validation of files and values, substitution, branches.
#include "pipelines/pipeline_test_util.h"

#include <gemstream/error.h>
#include <gemstream/pipeline_file.h>
#include <gtest/gtest.h>

#include <string>

using gemstream::Error;
using gemstream::ErrorKind;
using gemstream::ParameterType;
using gemstream::PipelineFile;
using namespace gemstream::test;

namespace {

// Parses `json` as if it were the file pipelines/NAME.json.
PipelineFile parse(const std::string &json, const std::string &name = "demo") {
  return PipelineFile::parse(json, "pipelines/" + name + ".json");
}

std::string file_with(const std::string &parameters, const std::string &graph,
                      const std::string &extra = "") {
  return R"({"name": "demo", "description": "A test pipeline.", "parameters": {)" + parameters +
         R"(}, "graph": ")" + graph + "\"" + extra + "}";
}

// The message of the Error `fn` throws, which must be of `kind`.
template <typename F> std::string error_of(F &&fn, ErrorKind kind) {
  try {
    fn();
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error thrown";
  return {};
}

std::string config_error(const std::string &json) {
  return error_of([&] { parse(json); }, ErrorKind::Config);
}

std::string value_error(const PipelineFile &f, const std::map<std::string, std::string> &values) {
  return error_of([&] { f.resolve(values); }, ErrorKind::InvalidArgument);
}

const char *kSimple = R"("text": {"type": "string", "doc": "Some text."},
  "count": {"type": "int", "min": 1, "max": 10, "default": 3, "doc": "How many."},
  "ratio": {"type": "double", "min": 0, "max": 1, "default": 0.5, "doc": "A ratio."},
  "flag": {"type": "bool", "default": false, "doc": "A switch."},
  "shape": {"type": "enum", "allowed": ["16:9", "9:16"], "default": "16:9", "doc": "Shape."},
  "delay": {"type": "duration", "unit": "ms", "min": "10ms", "max": "1min", "default": "1s", "doc": "Delay."},
  "label": {"type": "string", "optional": true, "doc": "Optional label."})";
const char *kSimpleGraph =
    "src text=${text} num=${count} ratio=${ratio} flag=${flag} shape=${shape} delay=${delay} "
    "label=${label} ! sink";

} // namespace

TEST(PipelineFile, ParsesParametersInFileOrder) {
  PipelineFile f = parse(file_with(kSimple, kSimpleGraph));
  EXPECT_EQ(f.name(), "demo");
  EXPECT_EQ(f.description(), "A test pipeline.");
  ASSERT_EQ(f.parameters().size(), 7u);
  const std::vector<std::string> order = {"text",  "count", "ratio", "flag",
                                          "shape", "delay", "label"};
  for (std::size_t i = 0; i < order.size(); ++i)
    EXPECT_EQ(f.parameters()[i].name, order[i]);
  const auto *count = f.parameter("count");
  ASSERT_NE(count, nullptr);
  EXPECT_EQ(count->type, ParameterType::Int);
  EXPECT_EQ(count->default_value, "3");
  EXPECT_EQ(count->min, "1");
  EXPECT_TRUE(f.parameter("text")->required());
  EXPECT_FALSE(f.parameter("label")->required());
  EXPECT_TRUE(f.parameter("label")->optional);
  EXPECT_EQ(f.parameter("delay")->default_value, "1000"); // in the property's unit
  EXPECT_EQ(f.parameter("ratio")->default_value, "0.5");
  EXPECT_EQ(f.parameter("nope"), nullptr);
}

TEST(PipelineFile, ResolvesWithDefaultsQuotingAndOptionalOmission) {
  PipelineFile f = parse(file_with(kSimple, kSimpleGraph));
  EXPECT_EQ(f.resolve({{"text", "hello world"}}),
            "src text=\"hello world\" num=\"3\" ratio=\"0.5\" flag=\"false\" shape=\"16:9\" "
            "delay=\"1000\" ! sink");
  EXPECT_EQ(f.resolve({{"text", "a"},
                       {"count", "+7"},
                       {"flag", "YES"},
                       {"delay", "1.5s"},
                       {"label", "x"},
                       {"ratio", "1e-1"}}),
            "src text=\"a\" num=\"7\" ratio=\"0.1\" flag=\"true\" shape=\"16:9\" delay=\"1500\" "
            "label=\"x\" ! sink");
}

TEST(PipelineFile, ValueErrorsNameTheFileTheParameterAndTheExpectation) {
  PipelineFile f = parse(file_with(kSimple, kSimpleGraph));
  EXPECT_EQ(value_error(f, {}),
            "pipelines/demo.json: parameter 'text': missing required value (string: Some text.)");
  EXPECT_EQ(value_error(f, {{"text", ""}}),
            "pipelines/demo.json: parameter 'text': must not be empty");
  EXPECT_EQ(value_error(f, {{"text", "a"}, {"count", "11"}}),
            "pipelines/demo.json: parameter 'count': expected an integer of at most 10, got 11");
  EXPECT_EQ(value_error(f, {{"text", "a"}, {"count", "3 ! fakesink"}}),
            "pipelines/demo.json: parameter 'count': \"3 ! fakesink\" is not an integer");
  EXPECT_EQ(value_error(f, {{"text", "a"}, {"ratio", "nan"}}),
            "pipelines/demo.json: parameter 'ratio': \"nan\" is not a number");
  EXPECT_EQ(value_error(f, {{"text", "a"}, {"flag", "maybe"}}),
            "pipelines/demo.json: parameter 'flag': \"maybe\" is not a boolean (true or false)");
  EXPECT_EQ(value_error(f, {{"text", "a"}, {"shape", "4:3"}}),
            "pipelines/demo.json: parameter 'shape': \"4:3\" is not one of: 16:9, 9:16");
  EXPECT_EQ(
      value_error(f, {{"text", "a"}, {"delay", "5ms"}}),
      "pipelines/demo.json: parameter 'delay': expected a duration of at least 10ms, got 5ms");
  EXPECT_EQ(
      value_error(f, {{"text", "a"}, {"delay", "soon"}}),
      "pipelines/demo.json: parameter 'delay': \"soon\" is not a duration (e.g. 500ms, 1.5s, 2m)");
  EXPECT_EQ(value_error(f, {{"text", "a"}, {"colour", "red"}}),
            "pipelines/demo.json: parameter 'colour': no such parameter (known: text, count, "
            "ratio, flag, shape, delay, label)");
  EXPECT_EQ(value_error(f, {{"text", std::string("a\0b", 3)}}),
            "pipelines/demo.json: parameter 'text': the value contains a NUL byte");
  EXPECT_EQ(value_error(f, {{"text", "\xff\xfe"}}),
            "pipelines/demo.json: parameter 'text': the value is not valid UTF-8");
  EXPECT_EQ(value_error(f, {{"text", "\xed\xa0\x80"}}), // a UTF-16 surrogate
            "pipelines/demo.json: parameter 'text': the value is not valid UTF-8");
}

TEST(PipelineFile, DurationsConvertToThePropertyUnit) {
  auto graph_for = [](const std::string &unit) {
    return parse(
        file_with(R"("d": {"type": "duration", "unit": ")" + unit + R"(", "doc": "A duration."})",
                  "src d=${d} ! sink"));
  };
  EXPECT_EQ(graph_for("ns").resolve({{"d", "1s"}}), "src d=\"1000000000\" ! sink");
  EXPECT_EQ(graph_for("ns").resolve({{"d", "250ms"}}), "src d=\"250000000\" ! sink");
  EXPECT_EQ(graph_for("ms").resolve({{"d", "2m"}}), "src d=\"120000\" ! sink");
  EXPECT_EQ(graph_for("ms").resolve({{"d", "750"}}), "src d=\"750\" ! sink"); // bare: the unit
  EXPECT_EQ(graph_for("s").resolve({{"d", "1.5h"}}), "src d=\"5400\" ! sink");
  EXPECT_NE(value_error(graph_for("s"), {{"d", "1ms"}}).find("shorter than 1 s"),
            std::string::npos);
  EXPECT_NE(value_error(graph_for("s"), {{"d", "-1s"}}).find("is negative"), std::string::npos);
}

TEST(PipelineFile, PathsMustExistWhenDeclaredSo) {
  TempDir dir;
  write_file(dir / "in.mp4", "x");
  PipelineFile f = parse(file_with(
      R"("input": {"type": "path", "must-exist": true, "doc": "Input."},
         "output": {"type": "path", "default": "out.bin", "doc": "Output."})",
      "filesrc location=${input} ! filesink location=${output}"));
  const std::string in = (dir / "in.mp4").string();
  EXPECT_EQ(f.resolve({{"input", in}}),
            "filesrc location=\"" + in + "\" ! filesink location=\"out.bin\"");
  EXPECT_EQ(value_error(f, {{"input", (dir / "missing.mp4").string()}}),
            "pipelines/demo.json: parameter 'input': no such file: " +
                (dir / "missing.mp4").string());
  EXPECT_EQ(value_error(f, {{"input", in}, {"output", ""}}),
            "pipelines/demo.json: parameter 'output': expected a file name, got an empty value");
}

TEST(PipelineFile, FlagsAndBranchesSelectGraphFragments) {
  PipelineFile f = parse(file_with(
      R"("formats": {"type": "flags", "allowed": ["mp4", "webm", "poster"], "default": "mp4,webm", "doc": "Outputs."},
         "audio": {"type": "bool", "default": true, "doc": "Audio."},
         "height": {"type": "int", "min": 0, "default": 0, "doc": "Height."})",
      "src name=s ! tee name=t",
      R"(, "branches": [
        {"when": "formats=mp4", "graph": "t. ! queue ! mp4sink"},
        {"when": ["formats=mp4", "audio"], "graph": "a. ! mp4audio"},
        {"when": "formats!=webm", "graph": "t. ! nowebm"},
        {"when": "!audio", "graph": "t. ! silent"},
        {"when": "height!=0", "graph": "t. ! video/x-raw,height=${height} ! scaled"},
        {"when": "height=0", "graph": "t. ! unscaled"}])"));
  EXPECT_EQ(f.resolve({}),
            "src name=s ! tee name=t  t. ! queue ! mp4sink  a. ! mp4audio  t. ! unscaled");
  EXPECT_EQ(f.resolve({{"formats", "poster, webm ,webm"}, {"audio", "false"}, {"height", "180"}}),
            "src name=s ! tee name=t  t. ! silent  t. ! video/x-raw,height=180 ! scaled");
  EXPECT_EQ(f.validate({{"formats", "poster,mp4"}}).at("formats"), "mp4,poster");
  EXPECT_EQ(value_error(f, {{"formats", "mp4,avi"}}),
            "pipelines/demo.json: parameter 'formats': \"avi\" is not one of: mp4, webm, poster "
            "(give a comma-separated list)");
  EXPECT_NE(value_error(f, {{"formats", ""}}).find("expected a comma-separated list"),
            std::string::npos);
}

TEST(PipelineFile, CompositeValuesAreOneQuotedString) {
  PipelineFile f = parse(file_with(R"("dir": {"type": "path", "doc": "Dir."},
      "n": {"type": "int", "default": 2, "doc": "N."})",
                                   "filesink location=${dir}/frame-${n}.png"));
  EXPECT_EQ(f.resolve({{"dir", "/tmp/a b"}}), "filesink location=\"/tmp/a b/frame-2.png\"");
}

TEST(PipelineFile, FileErrorsNameTheFileAndTheJsonPointer) {
  EXPECT_EQ(config_error("[1]"), "pipelines/demo.json: /: expected a JSON object");
  EXPECT_NE(config_error("{").find("pipelines/demo.json: not valid JSON"), std::string::npos);
  EXPECT_EQ(config_error(file_with("", "fakesrc ! fakesink", R"(, "grpah": "x")")),
            "pipelines/demo.json: /grpah: unknown field (known: name, description, interrupt, "
            "parameters, graph, branches)");
  EXPECT_EQ(config_error(file_with("", "fakesrc ! fakesink", R"(, "interrupt": "later")")),
            "pipelines/demo.json: /interrupt: expected \"finish\" or \"cancel\", got \"later\"");
  EXPECT_EQ(config_error(R"({"name": "other", "description": "d", "graph": "a ! b"})"),
            "pipelines/demo.json: /name: \"other\" must match the file name \"demo.json\"");
  EXPECT_EQ(config_error(file_with(R"("x": {"type": "text", "doc": "X."})", "a p=${x} ! b")),
            "pipelines/demo.json: /parameters/x/type: unknown type \"text\" (known: string, path, "
            "enum, flags, int, double, bool, duration)");
  EXPECT_EQ(config_error(file_with(R"("x": {"type": "string"})", "a p=${x} ! b")),
            "pipelines/demo.json: /parameters/x/doc: missing required field");
  EXPECT_EQ(config_error(file_with(
                R"("x": {"type": "enum", "allowed": ["a", "b"], "default": "c", "doc": "X."})",
                "a p=${x} ! b")),
            "pipelines/demo.json: /parameters/x/default: \"c\" is not one of: a, b");
  EXPECT_EQ(config_error(file_with(R"("x": {"type": "enum", "allowed": ["a b"], "doc": "X."})",
                                   "a p=${x} ! b")),
            "pipelines/demo.json: /parameters/x/allowed: \"a b\": allowed values use only "
            "letters, digits and _-+/:.");
  EXPECT_EQ(config_error(file_with(
                R"("x": {"type": "string", "optional": true, "default": "a", "doc": "X."})",
                "a p=${x} ! b")),
            "pipelines/demo.json: /parameters/x/default: an optional parameter has no default: "
            "when it is not given, the element's own default applies");
  EXPECT_EQ(config_error(file_with(R"("x": {"type": "string", "doc": "X."})", "a ! b")),
            "pipelines/demo.json: /parameters/x: declared but used by no graph or branch");
  EXPECT_EQ(config_error(file_with(R"("x": {"type": "string", "doc": "X."})", "a p=${y} ! b")),
            "pipelines/demo.json: /graph: placeholder ${y} names no parameter (declared: x)");
  EXPECT_EQ(config_error(file_with(R"("x": {"type": "int", "doc": "X."})", "a ! b",
                                   R"(, "branches": [{"when": "x", "graph": "c p=${x}"}])")),
            "pipelines/demo.json: /branches/0/when: \"x\": 'x' is not a bool; write x=VALUE");
  EXPECT_EQ(config_error(file_with(R"("x": {"type": "flags", "allowed": ["a"], "doc": "X."})",
                                   "a ! b", R"(, "branches": [{"when": "x=z", "graph": "c"}])")),
            "pipelines/demo.json: /branches/0/when: \"x=z\": \"z\" is not one of: a (give a "
            "comma-separated list)");
}

TEST(PipelineFile, UsedParametersAreThoseOfTheSelectedBranches) {
  const PipelineFile f = parse(file_with(
      R"("formats": {"type": "flags", "allowed": ["a", "b"], "default": "a", "doc": "F."},
         "a-out": {"type": "path", "output": true, "default": "a.bin", "doc": "A."},
         "b-out": {"type": "path", "output": true, "default": "b.bin", "doc": "B."})",
      "src ! tee name=t",
      R"(, "branches": [{"when": "formats=a", "graph": "t. ! sink location=${a-out}"},
                        {"when": "formats=b", "graph": "t. ! sink location=${b-out}"}])"));
  EXPECT_EQ(f.used_parameters({}), (std::set<std::string>{"a-out"}));
  EXPECT_EQ(f.used_parameters({{"formats", "a,b"}}), (std::set<std::string>{"a-out", "b-out"}));
  EXPECT_EQ(f.used_parameters({{"formats", "b"}}), (std::set<std::string>{"b-out"}));
}

TEST(PipelineFile, InterruptSaysWhetherAStoppedRunKeepsItsOutput) {
  EXPECT_EQ(parse(file_with("", "fakesrc ! fakesink")).interrupt(),
            PipelineFile::Interrupt::Finish);
  EXPECT_EQ(parse(file_with("", "fakesrc ! fakesink", R"(, "interrupt": "finish")")).interrupt(),
            PipelineFile::Interrupt::Finish);
  EXPECT_EQ(parse(file_with("", "fakesrc ! fakesink", R"(, "interrupt": "cancel")")).interrupt(),
            PipelineFile::Interrupt::Cancel);
}

TEST(PipelineFile, PlaceholdersOnlyStandWhereValuesGo) {
  const char *param =
      R"("x": {"type": "string", "doc": "X."}, "n": {"type": "int", "default": 1, "doc": "N."})";
  // As an element, a property name, a pad reference, inside template quotes, in caps.
  EXPECT_NE(config_error(file_with(param, "${x} n=${n} ! fakesink"))
                .find("a placeholder may only stand in a property value"),
            std::string::npos);
  EXPECT_NE(config_error(file_with(param, "fakesrc ${x}=1 n=${n} ! fakesink"))
                .find("a placeholder may only stand in a property value"),
            std::string::npos);
  EXPECT_NE(config_error(file_with(param, "fakesrc p=${x} n=${n} ! t.${x}"))
                .find("a placeholder may only stand in a property value"),
            std::string::npos);
  EXPECT_NE(config_error(file_with(param, "fakesrc p=\\\"a ${x}\\\" n=${n} ! fakesink"))
                .find("placeholder inside quotes"),
            std::string::npos);
  EXPECT_EQ(config_error(file_with(param, "a n=${n} ! video/x-raw,format=${x} ! b")),
            "pipelines/demo.json: /graph: \"video/x-raw,format=${x}\": caps may only hold int, "
            "double, bool, duration or enum parameters, and 'x' is a string");
  EXPECT_NE(config_error(file_with(param, "a p=${x} ! video/x-raw,height=1${n} ! b"))
                .find("must be a whole field value"),
            std::string::npos);
  // Numbers in caps are substituted bare.
  PipelineFile f =
      parse(file_with(param, "a p=${x} ! video/x-raw,height=${n},framerate=${n}/1 ! b"));
  EXPECT_EQ(f.resolve({{"x", "v"}, {"n", "24"}}),
            "a p=\"v\" ! video/x-raw,height=24,framerate=24/1 ! b");
}

TEST(PipelineFile, ParameterArguments) {
  auto values = gemstream::parse_parameter_arguments({"prompt=a = b", "x=", "y==1"});
  EXPECT_EQ(values.at("prompt"), "a = b");
  EXPECT_EQ(values.at("x"), "");
  EXPECT_EQ(values.at("y"), "=1");
  EXPECT_EQ(error_of([] { gemstream::parse_parameter_arguments({"prompt"}); },
                     ErrorKind::InvalidArgument),
            "expected name=value, got \"prompt\"");
  EXPECT_EQ(error_of(
                [] {
                  gemstream::parse_parameter_arguments({"a=1", "a=2"});
                },
                ErrorKind::InvalidArgument),
            "parameter 'a' is given twice");
}

TEST(PipelineFile, FindsInstalledPipelinesByName) {
  // GEMSTREAM_DATA_DIR is the source tree in tests.
  const auto path = PipelineFile::find("cover-image");
  EXPECT_EQ(path, std::filesystem::path(GEMSTREAM_SOURCE_DIR) / "pipelines" / "cover-image.json");
  EXPECT_EQ(PipelineFile::find("./x.json"), "./x.json");
  const std::string e =
      error_of([] { PipelineFile::find("no-such-pipeline"); }, ErrorKind::NotFound);
  EXPECT_NE(e.find("no pipeline named \"no-such-pipeline\""), std::string::npos) << e;
  EXPECT_NE(e.find("background-loop, background-video, cover-image"), std::string::npos) << e;
  const auto listed = PipelineFile::list();
  ASSERT_GE(listed.size(), 3u);
  EXPECT_TRUE(std::is_sorted(listed.begin(), listed.end()));
  EXPECT_EQ(error_of([] { PipelineFile::load("/nonexistent/p.json"); }, ErrorKind::Io)
                .rfind("cannot read pipeline file /nonexistent/p.json", 0),
            0u);
}
