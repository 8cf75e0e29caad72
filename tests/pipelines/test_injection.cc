// No value can change the graph: adversarial values must come out of gst_parse_launch as the
// exact property values, with exactly the template's elements.
#include "pipelines/pipeline_test_util.h"

#include <gemstream/error.h>
#include <gemstream/pipeline_file.h>
#include <gst/gst.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

using gemstream::PipelineFile;

namespace {

struct Parsed {
  std::string error;
  std::vector<std::pair<std::string, std::string>> elements; // name, factory
  std::map<std::string, std::string> locations;              // element name → location
};

Parsed parse_launch(const std::string &line) {
  if (!gst_is_initialized())
    gst_init(nullptr, nullptr);
  Parsed out;
  GError *err = nullptr;
  GstElement *p = gst_parse_launch_full(line.c_str(), nullptr, GST_PARSE_FLAG_FATAL_ERRORS, &err);
  if (!p) {
    out.error = err ? err->message : "parse failed";
    g_clear_error(&err);
    return out;
  }
  GstIterator *it = gst_bin_iterate_elements(GST_BIN(p));
  GValue item = G_VALUE_INIT;
  while (gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
    auto *e = GST_ELEMENT(g_value_get_object(&item));
    GstElementFactory *f = gst_element_get_factory(e);
    out.elements.emplace_back(GST_OBJECT_NAME(e), f ? GST_OBJECT_NAME(f) : "");
    if (g_object_class_find_property(G_OBJECT_GET_CLASS(e), "location")) {
      gchar *loc = nullptr;
      g_object_get(e, "location", &loc, nullptr);
      out.locations[GST_OBJECT_NAME(e)] = loc ? loc : "<NULL>";
      g_free(loc);
    }
    g_value_reset(&item);
  }
  g_value_unset(&item);
  gst_iterator_free(it);
  std::sort(out.elements.begin(), out.elements.end());
  gst_object_unref(p);
  return out;
}

const char *kTwoStrings = R"({"name": "inject", "description": "Two adjacent string values.",
  "parameters": {
    "in": {"type": "string", "doc": "Input."},
    "out": {"type": "path", "doc": "Output."}
  },
  "graph": "filesrc name=src location=${in} ! filesink name=sink location=${out}"})";

const std::vector<std::string> kNasty = {
    "plain",
    "\" ! filesink location=/etc/passwd",
    "x\\",
    "\\",
    "\\\\",
    "\"",
    "\"\"",
    "\"quoted\"",
    "NULL",
    "\" name=evil \"",
    "a\\\" ! fakesink name=pwn x=\\\"",
    "'single' ! fakesink",
    "'",
    "${out}",
    "$(touch /tmp/pwned)",
    "a ! b",
    "name=evil",
    "line one\nline two ! fakesink",
    "tab\there",
    " leading and trailing ",
    "semi; colon, comma",
    "video/x-raw,width=1 ! fakesink",
    "d. ! fakesink",
    "\\\" ! filesink location=/tmp/x \\\"",
    "unicode: テスト ✓ émoji 🎬",
    "ctrl \x01\x1f\x7f",
    "end with quote\"",
    "\"start with quote",
    "=",
    "!",
    std::string(5000, 'a') + "\\",
};

} // namespace

TEST(Injection, AdversarialStringValuesStayOnePropertyValue) {
  const PipelineFile f = PipelineFile::parse(kTwoStrings, "pipelines/inject.json");
  const std::vector<std::pair<std::string, std::string>> expected_elements = {{"sink", "filesink"},
                                                                              {"src", "filesrc"}};
  for (const auto &a : kNasty) {
    for (const auto &b : kNasty) {
      const std::string line = f.resolve({{"in", a}, {"out", b}});
      const Parsed parsed = parse_launch(line);
      ASSERT_TRUE(parsed.error.empty()) << parsed.error << "\nline: " << line;
      EXPECT_EQ(parsed.elements, expected_elements) << line;
      EXPECT_EQ(parsed.locations.at("src"), a) << line;
      EXPECT_EQ(parsed.locations.at("sink"), b) << line;
    }
  }
}

TEST(Injection, CompositeValuesKeepTheirText) {
  const PipelineFile f = PipelineFile::parse(
      R"({"name": "composite", "description": "A composite value.",
          "parameters": {"dir": {"type": "path", "doc": "Dir."}, "n": {"type": "int", "default": 1, "doc": "N."}},
          "graph": "fakesrc ! filesink name=sink location=${dir}/img-${n}.png"})",
      "pipelines/composite.json");
  for (const auto &dir : kNasty) {
    const std::string line = f.resolve({{"dir", dir}, {"n", "42"}});
    const Parsed parsed = parse_launch(line);
    ASSERT_TRUE(parsed.error.empty()) << parsed.error << "\nline: " << line;
    EXPECT_EQ(parsed.elements.size(), 2u) << line;
    EXPECT_EQ(parsed.locations.at("sink"), dir + "/img-42.png") << line;
  }
}

TEST(Injection, TypedValuesCannotCarrySyntax) {
  const PipelineFile f = PipelineFile::parse(
      R"({"name": "typed", "description": "Typed values.",
          "parameters": {
            "n": {"type": "int", "default": 1, "doc": "N."},
            "h": {"type": "int", "default": 2, "doc": "H."},
            "mode": {"type": "enum", "allowed": ["a", "b"], "default": "a", "doc": "Mode."},
            "on": {"type": "bool", "default": true, "doc": "On."},
            "d": {"type": "duration", "unit": "ns", "default": "1s", "doc": "D."}
          },
          "graph": "fakesrc num-buffers=${n} ! video/x-raw,height=${h} ! fakesink name=${mode} sync=${on} max-lateness=${d}"})",
      "pipelines/typed.json");
  for (const auto &v : {"1 ! fakesink", "1,width=2", "1 name=x", "0x10", "1.5", ""}) {
    EXPECT_THROW(f.resolve({{"n", v}}), gemstream::Error) << v;
    EXPECT_THROW(f.resolve({{"h", v}}), gemstream::Error) << v;
  }
  EXPECT_THROW(f.resolve({{"mode", "a ! fakesink"}}), gemstream::Error);
  EXPECT_THROW(f.resolve({{"on", "true ! fakesink"}}), gemstream::Error);
  EXPECT_THROW(f.resolve({{"d", "1s ! fakesink"}}), gemstream::Error);
  const Parsed parsed = parse_launch(f.resolve({{"n", "3"}, {"h", "4"}, {"mode", "b"}}));
  ASSERT_TRUE(parsed.error.empty()) << parsed.error;
  EXPECT_EQ(parsed.elements.size(), 3u);
}
