// Checks every element of the gemstream plugin: state cycling without a network, and a
// property lint (nick, blurb, ranges, mutability, no readable secrets).
#include <gst/gst.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::vector<std::string> gemstream_elements() {
  std::vector<std::string> names;
  GList *features = gst_registry_get_feature_list_by_plugin(gst_registry_get(), "gemstream");
  for (GList *l = features; l; l = l->next)
    if (GST_IS_ELEMENT_FACTORY(l->data))
      names.push_back(gst_plugin_feature_get_name(GST_PLUGIN_FEATURE(l->data)));
  gst_plugin_feature_list_free(features);
  return names;
}

// Properties that make each element try to work, against an address where nothing listens.
void configure_unreachable(GstElement *e) {
  GObjectClass *klass = G_OBJECT_GET_CLASS(e);
  if (g_object_class_find_property(klass, "prompt"))
    g_object_set(e, "prompt", "state test", nullptr);
  if (g_object_class_find_property(klass, "question"))
    g_object_set(e, "question", "state test", nullptr);
  if (g_object_class_find_property(klass, "base-url"))
    g_object_set(e, "base-url", "http://127.0.0.1:9", nullptr);
}

// A live source for a sink: a camera sending JPEGs when the sink takes them, else a microphone.
GstElement *live_source_for(GstElement *sink) {
  bool jpeg = false;
  for (const GList *l = gst_element_class_get_pad_template_list(GST_ELEMENT_GET_CLASS(sink)); l;
       l = l->next) {
    auto *templ = GST_PAD_TEMPLATE(l->data);
    if (GST_PAD_TEMPLATE_DIRECTION(templ) != GST_PAD_SINK ||
        GST_PAD_TEMPLATE_PRESENCE(templ) != GST_PAD_ALWAYS)
      continue;
    GstCaps *caps = gst_pad_template_get_caps(templ);
    jpeg = jpeg || gst_structure_has_name(gst_caps_get_structure(caps, 0), "image/jpeg");
    gst_caps_unref(caps);
  }
  if (jpeg)
    return gst_parse_bin_from_description("videotestsrc is-live=true ! jpegenc", TRUE, nullptr);
  GstElement *src = gst_element_factory_make("audiotestsrc", nullptr);
  g_object_set(src, "is-live", TRUE, nullptr);
  return src;
}

bool has_src_pad_template(GstElement *e) {
  for (const GList *l = gst_element_class_get_pad_template_list(GST_ELEMENT_GET_CLASS(e)); l;
       l = l->next)
    if (GST_PAD_TEMPLATE_DIRECTION(l->data) == GST_PAD_SRC)
      return true;
  return false;
}

class ElementTest : public ::testing::TestWithParam<std::string> {};

} // namespace

TEST(GemstreamPlugin, RegistersTheElements) {
  auto names = gemstream_elements();
  EXPECT_NE(std::find(names.begin(), names.end(), "imagegensrc"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "veosrc"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "videoloop"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "framesampler"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "geminianalyzesink"), names.end());
}

TEST_P(ElementTest, CyclesStatesRepeatedlyWithoutNetwork) {
  for (int round = 0; round < 5; ++round) {
    GstElement *pipeline = gst_pipeline_new(nullptr);
    GstElement *e = gst_element_factory_make(GetParam().c_str(), nullptr);
    ASSERT_NE(e, nullptr);
    configure_unreachable(e);
    if (has_src_pad_template(e)) {
      GstElement *sink = gst_element_factory_make("fakesink", nullptr);
      gst_bin_add_many(GST_BIN(pipeline), e, sink, nullptr);
      ASSERT_TRUE(gst_element_link(e, sink));
    } else {
      // A sink: fed by a live source, as a microphone or a camera would.
      GstElement *src = live_source_for(e);
      ASSERT_NE(src, nullptr);
      gst_bin_add_many(GST_BIN(pipeline), src, e, nullptr);
      ASSERT_TRUE(gst_element_link(src, e));
    }
    const GstState states[] = {GST_STATE_READY, GST_STATE_PAUSED, GST_STATE_PLAYING,
                               GST_STATE_PAUSED, GST_STATE_READY, GST_STATE_PLAYING,
                               GST_STATE_NULL};
    for (GstState s : states) {
      auto t0 = std::chrono::steady_clock::now();
      EXPECT_NE(gst_element_set_state(pipeline, s), GST_STATE_CHANGE_FAILURE)
          << GetParam() << " → " << gst_element_state_get_name(s);
      EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s)
          << GetParam() << " → " << gst_element_state_get_name(s) << " was slow";
    }
    gst_object_unref(pipeline);
  }
}

TEST_P(ElementTest, PropertiesAreDocumentedAndSecretsWriteOnly) {
  GstElement *e = gst_element_factory_make(GetParam().c_str(), nullptr);
  ASSERT_NE(e, nullptr);
  guint n = 0;
  GParamSpec **specs = g_object_class_list_properties(G_OBJECT_GET_CLASS(e), &n);
  for (guint i = 0; i < n; ++i) {
    GParamSpec *p = specs[i];
    if (p->owner_type != G_OBJECT_TYPE(e))
      continue;  // inherited from GstBaseSrc etc.
    const std::string name = p->name;
    const std::string blurb = g_param_spec_get_blurb(p) ? g_param_spec_get_blurb(p) : "";
    EXPECT_TRUE(g_param_spec_get_nick(p) && *g_param_spec_get_nick(p)) << name;
    EXPECT_GE(blurb.size(), 20u) << name << ": blurb too short";
    EXPECT_EQ(blurb.back(), '.') << name << ": blurb should be a full sentence";
    if (p->flags & G_PARAM_WRITABLE) {
      EXPECT_TRUE(p->flags & GST_PARAM_MUTABLE_READY || p->flags & GST_PARAM_MUTABLE_PLAYING ||
                  p->flags & GST_PARAM_MUTABLE_PAUSED)
          << name << ": no mutability flag";
    }
    if (name.find("key") != std::string::npos || name.find("token") != std::string::npos ||
        name.find("secret") != std::string::npos) {
      EXPECT_FALSE(p->flags & G_PARAM_READABLE) << name << " is a secret and must be write-only";
    }
    if (G_IS_PARAM_SPEC_UINT(p)) {
      auto *u = G_PARAM_SPEC_UINT(p);
      EXPECT_LT(u->minimum, u->maximum) << name;
      EXPECT_GE(u->default_value, u->minimum) << name;
      EXPECT_LE(u->default_value, u->maximum) << name;
    }
    if (G_IS_PARAM_SPEC_ENUM(p)) {
      GEnumClass *klass = G_PARAM_SPEC_ENUM(p)->enum_class;
      for (guint v = 0; v < klass->n_values; ++v)
        EXPECT_TRUE(g_regex_match_simple("^[a-z0-9:-]+$", klass->values[v].value_nick,
                                         GRegexCompileFlags(0), GRegexMatchFlags(0)))
            << name << ": enum nick " << klass->values[v].value_nick;
    }
  }
  g_free(specs);
  GstElementFactory *f = gst_element_get_factory(e);
  EXPECT_TRUE(gst_element_factory_get_metadata(f, GST_ELEMENT_METADATA_KLASS));
  EXPECT_TRUE(gst_element_factory_get_metadata(f, GST_ELEMENT_METADATA_DESCRIPTION));
  gst_object_unref(e);
}

INSTANTIATE_TEST_SUITE_P(AllElements, ElementTest, ::testing::ValuesIn(gemstream_elements()),
                         [](const auto &info) { return info.param; });
